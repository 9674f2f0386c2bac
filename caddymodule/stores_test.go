package caddymodule

import (
	"encoding/json"
	"strings"
	"testing"
)

// storeConfig is a configuration with this store line.
func storeConfig(store string) string {
	return "{\n\tstepup {\n\t\t" + store + "\n\t\ttier login {\n\t\t\tmethod password\n\t\t\tmax_age 1h\n\t\t}\n\t}\n}\n"
}

func TestStoreModulesAdapt(t *testing.T) {
	tests := []struct {
		store string
		want  string // the store's JSON
	}{
		{"store local", `{"store":"local"}`},
		{"store local {\n\t\t\tpath /var/lib/stepup.db\n\t\t\tsweep_every 5m\n\t\t}", `{"path":"/var/lib/stepup.db","store":"local","sweep_every":300000000000}`},
		{"store memory", `{"store":"memory"}`},
		{"store redis {\n\t\t\taddress 10.0.0.1:6379 10.0.0.2:6379\n\t\t\taddress 10.0.0.3:6379\n\t\t\tusername u\n\t\t\tpassword {env.P}\n\t\t\tkey_prefix x:\n\t\t\ttimeout 1s\n\t\t}",
			`{"addresses":["10.0.0.1:6379","10.0.0.2:6379","10.0.0.3:6379"],"key_prefix":"x:","password":"{env.P}","store":"redis","timeout":1000000000,"username":"u"}`},
		{"store redis {\n\t\t\taddress s1:26379 s2:26379\n\t\t\tmaster_name mymaster\n\t\t\tsentinel_password sp\n\t\t\tdb 2\n\t\t\ttls {\n\t\t\t\tca /ca.pem\n\t\t\t\tserver_name r\n\t\t\t}\n\t\t}",
			`{"addresses":["s1:26379","s2:26379"],"db":2,"master_name":"mymaster","sentinel_password":"sp","store":"redis","tls":{"ca":"/ca.pem","server_name":"r"}}`},
		{"store redis {\n\t\t\taddress c:7000\n\t\t\tcluster\n\t\t}", `{"addresses":["c:7000"],"cluster":true,"store":"redis"}`},
	}
	for _, tc := range tests {
		cfg, _, err := adaptCaddyfile(storeConfig(tc.store))
		if err != nil {
			t.Errorf("%s: %v", tc.store, err)
			continue
		}
		var doc struct {
			Apps struct {
				Stepup struct {
					Store json.RawMessage `json:"store"`
				} `json:"stepup"`
			} `json:"apps"`
		}
		_ = json.Unmarshal(cfg, &doc)
		if got := string(doc.Apps.Stepup.Store); got != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", tc.store, got, tc.want)
		}
	}
}

func TestStoreModuleErrorsNameTheOption(t *testing.T) {
	tests := []struct{ store, want string }{
		{"store nosuch", `unknown store "nosuch"`},
		{"store local {\n\t\t\tbogus 1\n\t\t}", `store local: unknown option "bogus"`},
		{"store local {\n\t\t\tpath\n\t\t}", "wrong argument count"},
		{"store redis {\n\t\t\tbogus\n\t\t}", `store redis: unknown option "bogus"`},
		{"store redis {\n\t\t\tdb -1\n\t\t}", "db: want 0 or more"},
		{"store redis {\n\t\t\ttls {\n\t\t\t\tpin x\n\t\t\t}\n\t\t}", `tls: unknown option "pin"`},
		{"store redis {\n\t\t\tkey_prefix a\n\t\t\tkey_prefix b\n\t\t}", "given more than once"},
		{"store memory {\n\t\t\tpath x\n\t\t}", `store memory has no option "path"`},
	}
	for _, tc := range tests {
		_, _, err := adaptCaddyfile(storeConfig(tc.store))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error containing %q", tc.store, err, tc.want)
		}
	}
}

func TestRedisStoreRefusesSettingsThatCannotWork(t *testing.T) {
	for _, tc := range []struct{ json, want string }{
		{`{"store":"redis","addresses":["a:1","b:1"],"db":1}`, "database 0 only"},
		{`{"store":"redis","addresses":["a:1"],"cluster":true,"master_name":"m"}`, "cluster or master_name"},
		{`{"store":"redis","tls":{"cert":"/c.pem"}}`, "cert and key go together"},
	} {
		c := Config{StoreRaw: json.RawMessage(tc.json)}
		_, err := c.openStore(caddyContext(t))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.json, err, tc.want)
		}
	}
}
