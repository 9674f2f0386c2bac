package store_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddy-stepup/caddy-stepup/internal/testenv"
	"github.com/caddy-stepup/caddy-stepup/stepup"
	"github.com/caddy-stepup/caddy-stepup/stepup/store"
	"github.com/caddy-stepup/caddy-stepup/stepup/store/storetest"
)

func TestMemoryConformance(t *testing.T) {
	m := store.NewMemory(time.Minute, nil)
	t.Cleanup(func() { _ = m.Close() })
	storetest.Run(t, storetest.Backend{Open: func(*testing.T) stepup.Store { return m }})
}

func TestLocalConformance(t *testing.T) {
	l, err := store.OpenLocal(filepath.Join(t.TempDir(), "store.db"), time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	storetest.Run(t, storetest.Backend{Open: func(*testing.T) stepup.Store { return l }})
}

// openRedis returns a Backend whose every Open is a client of its own
// (two Caddy instances sharing one Redis).
func openRedis(opts *redis.UniversalOptions) storetest.Backend {
	return storetest.Backend{Open: func(t *testing.T) stepup.Store {
		c := redis.NewUniversalClient(opts)
		r := store.NewRedis(c, "stepup-test:")
		t.Cleanup(func() { _ = r.Close(); _ = c.Close() })
		return r
	}}
}

func TestRedisConformance(t *testing.T) {
	srv := testenv.StartRedis(t)
	storetest.Run(t, openRedis(&redis.UniversalOptions{Addrs: []string{srv.Addr}}))
}

func TestRedisClusterConformance(t *testing.T) {
	c := testenv.StartRedisCluster(t)
	storetest.Run(t, openRedis(&redis.UniversalOptions{Addrs: c.Addrs}))
}

func TestRedisSentinelConformance(t *testing.T) {
	master := testenv.StartRedis(t)
	sentinel := testenv.StartRedisSentinel(t, "stepup-master", master.Addr)
	storetest.Run(t, openRedis(&redis.UniversalOptions{Addrs: []string{sentinel}, MasterName: "stepup-master"}))
}
