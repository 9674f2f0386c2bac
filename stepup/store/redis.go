package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis is a store shared by several Caddy instances: a single Redis
// server, a Sentinel-managed one or a Redis Cluster, through go-redis's
// universal client. Every record has a time to live on the server; every
// read-modify-write is one Lua script on one key, so it is atomic across
// instances (and, touching one key, stays on one cluster slot). Each script
// that changes a record also publishes its key on the change channel, in
// the same atomic step: a write is never committed without its report.
//
// Redis implements stepup.SharedStore: it listens on the change channel and
// tells the caches in front of it (the engine's session cache) what to
// drop, and when the channel is down, that nothing cached may be served.
type Redis struct {
	client  redis.UniversalClient
	prefix  string
	channel string

	coherent atomic.Bool
	mu       sync.Mutex
	watchers map[int]watcher
	nextID   int

	cancel context.CancelFunc
	done   chan struct{}
	psMu   sync.Mutex
	ps     *redis.PubSub // the current subscription, closed by Close
}

type watcher struct {
	changed func(string)
	reset   func()
}

// Heartbeat of the change channel: a ping every heartbeatEvery, and the
// channel counts as down when nothing (a change or a pong) arrived for
// heartbeatTimeout. A cache is bypassed from then on: this bounds how long
// a silently broken link can leave a cache serving a revoked session.
const (
	heartbeatEvery   = 500 * time.Millisecond
	heartbeatTimeout = 1500 * time.Millisecond
)

// NewRedis returns a store on client, whose keys start with prefix, and
// starts listening for changes. Close stops listening; the client is the
// caller's to close.
func NewRedis(client redis.UniversalClient, prefix string) *Redis {
	ctx, cancel := context.WithCancel(context.Background())
	r := &Redis{
		client: client, prefix: prefix, channel: prefix + "changes",
		watchers: map[int]watcher{}, cancel: cancel, done: make(chan struct{}),
	}
	go r.listen(ctx)
	return r
}

// Close stops listening for changes.
func (r *Redis) Close() error {
	r.cancel()
	r.psMu.Lock()
	if r.ps != nil {
		_ = r.ps.Close() // interrupts a blocked read
	}
	r.psMu.Unlock()
	<-r.done
	return nil
}

// Ping checks that Redis answers.
func (r *Redis) Ping(ctx context.Context) error {
	return r.client.Ping(ctx).Err()
}

func (r *Redis) key(k string) string { return r.prefix + k }

// unavailable wraps a failure to reach or use Redis. It is never
// ErrNotFound: a caller that needed the answer fails closed.
func unavailable(err error) error { return fmt.Errorf("%w: redis: %v", ErrUnavailable, err) }

// pttl is a time to live in the milliseconds the scripts take; 0 = none.
func pttl(ttl time.Duration) int64 {
	if ttl <= 0 {
		return 0
	}
	return max(ttl.Milliseconds(), 1)
}

// The scripts: KEYS[1] the record, ARGV[1] the change channel, ARGV[2] the
// key reported on it, then the operation's arguments.
const setLua = `
local function put(v, ttl)
  if tonumber(ttl) > 0 then redis.call('SET', KEYS[1], v, 'PX', ttl) else redis.call('SET', KEYS[1], v) end
end
`

var (
	scriptSet = redis.NewScript(setLua + `
put(ARGV[3], ARGV[4])
redis.call('PUBLISH', ARGV[1], ARGV[2])
return 1`)
	scriptDelete = redis.NewScript(`
local n = redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[1], ARGV[2])
return n`)
	scriptTake = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', ARGV[1], ARGV[2])
end
return v`)
	// A counter's window starts when it is created; changing it never
	// extends it.
	scriptAdd = redis.NewScript(`
local existed = redis.call('EXISTS', KEYS[1])
local n = redis.call('INCRBY', KEYS[1], ARGV[3])
if existed == 0 and tonumber(ARGV[4]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[4]) end
redis.call('PUBLISH', ARGV[1], ARGV[2])
return n`)
	scriptReplace = redis.NewScript(setLua + `
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
put(ARGV[3], ARGV[4])
redis.call('PUBLISH', ARGV[1], ARGV[2])
return 1`)
	scriptSetIfAbsent = redis.NewScript(setLua + `
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
put(ARGV[3], ARGV[4])
redis.call('PUBLISH', ARGV[1], ARGV[2])
return 1`)
	scriptCAS = redis.NewScript(setLua + `
if redis.call('GET', KEYS[1]) ~= ARGV[3] then return 0 end
put(ARGV[4], ARGV[5])
redis.call('PUBLISH', ARGV[1], ARGV[2])
return 1`)
)

func (r *Redis) run(ctx context.Context, s *redis.Script, key string, args ...any) *redis.Cmd {
	return s.Run(ctx, r.client, []string{r.key(key)}, append([]any{r.channel, key}, args...)...)
}

// Get returns the value under key.
func (r *Redis) Get(ctx context.Context, key string) ([]byte, error) {
	v, err := r.client.Get(ctx, r.key(key)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, unavailable(err)
	}
	return v, nil
}

// Set stores val under key for ttl (0 = until deleted).
func (r *Redis) Set(ctx context.Context, key string, val []byte, ttl time.Duration) error {
	if err := r.run(ctx, scriptSet, key, val, pttl(ttl)).Err(); err != nil {
		return unavailable(err)
	}
	return nil
}

// Delete removes key.
func (r *Redis) Delete(ctx context.Context, key string) error {
	if err := r.run(ctx, scriptDelete, key).Err(); err != nil {
		return unavailable(err)
	}
	return nil
}

// Take returns the value under key and deletes it, atomically.
func (r *Redis) Take(ctx context.Context, key string) ([]byte, error) {
	v, err := r.run(ctx, scriptTake, key).Text()
	if errors.Is(err, redis.Nil) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, unavailable(err)
	}
	return []byte(v), nil
}

// Incr adds one to the counter under key.
func (r *Redis) Incr(ctx context.Context, key string, ttl time.Duration) (int64, error) {
	return r.Add(ctx, key, 1, ttl)
}

// Add adds delta to the counter under key. A new counter expires ttl after
// its creation; changing it does not extend it.
func (r *Redis) Add(ctx context.Context, key string, delta int64, ttl time.Duration) (int64, error) {
	n, err := r.run(ctx, scriptAdd, key, delta, pttl(ttl)).Int64()
	if err != nil {
		return 0, unavailable(err)
	}
	return n, nil
}

func (r *Redis) flag(cmd *redis.Cmd) (bool, error) {
	n, err := cmd.Int64()
	if err != nil {
		return false, unavailable(err)
	}
	return n == 1, nil
}

// Replace stores val under key for ttl only if key exists.
func (r *Redis) Replace(ctx context.Context, key string, val []byte, ttl time.Duration) (bool, error) {
	return r.flag(r.run(ctx, scriptReplace, key, val, pttl(ttl)))
}

// SetIfAbsent stores val under key for ttl only if key does not exist.
func (r *Redis) SetIfAbsent(ctx context.Context, key string, val []byte, ttl time.Duration) (bool, error) {
	return r.flag(r.run(ctx, scriptSetIfAbsent, key, val, pttl(ttl)))
}

// CompareAndSwap stores val under key for ttl only if the value there is
// exactly old.
func (r *Redis) CompareAndSwap(ctx context.Context, key string, old, val []byte, ttl time.Duration) (bool, error) {
	return r.flag(r.run(ctx, scriptCAS, key, old, val, pttl(ttl)))
}

// globEscaper makes a prefix literal in a SCAN pattern.
var globEscaper = strings.NewReplacer(`\`, `\\`, `*`, `\*`, `?`, `\?`, `[`, `\[`, `]`, `\]`)

// Keys lists up to limit live keys that start with prefix: SCAN on every
// master of a cluster, on the server otherwise. Never on the hot path.
func (r *Redis) Keys(ctx context.Context, prefix string, limit int) ([]string, error) {
	pattern := globEscaper.Replace(r.key(prefix)) + "*"
	var mu sync.Mutex
	var out []string
	scan := func(ctx context.Context, c redis.Cmdable) error {
		iter := c.Scan(ctx, 0, pattern, 512).Iterator()
		for iter.Next(ctx) {
			mu.Lock()
			if len(out) >= limit {
				mu.Unlock()
				return nil
			}
			out = append(out, strings.TrimPrefix(iter.Val(), r.prefix))
			mu.Unlock()
		}
		return iter.Err()
	}
	var err error
	if cc, ok := r.client.(*redis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { return scan(ctx, c) })
	} else {
		err = scan(ctx, r.client)
	}
	if err != nil {
		return nil, unavailable(err)
	}
	return out, nil
}

// Watch implements stepup.SharedStore.
func (r *Redis) Watch(changed func(key string), reset func()) (stop func()) {
	r.mu.Lock()
	id := r.nextID
	r.nextID++
	r.watchers[id] = watcher{changed, reset}
	r.mu.Unlock()
	return func() {
		r.mu.Lock()
		delete(r.watchers, id)
		r.mu.Unlock()
	}
}

// Coherent implements stepup.SharedStore: the change channel is up.
func (r *Redis) Coherent() bool { return r.coherent.Load() }

func (r *Redis) each(f func(w watcher)) {
	r.mu.Lock()
	ws := make([]watcher, 0, len(r.watchers))
	for _, w := range r.watchers {
		ws = append(ws, w)
	}
	r.mu.Unlock()
	for _, w := range ws {
		f(w)
	}
}

// setCoherent changes the channel's state. Caches are reset on both edges:
// going down, because changes will be missed; coming back, because changes
// were missed while it was down. Going up resets before it reports
// coherence, so a copy read before that cannot be served.
func (r *Redis) setCoherent(up bool) {
	if !up {
		r.coherent.Store(false)
	}
	r.each(func(w watcher) { w.reset() })
	if up {
		r.coherent.Store(true)
	}
}

// listen subscribes to the change channel, and resubscribes after any
// failure, until ctx ends.
func (r *Redis) listen(ctx context.Context) {
	defer close(r.done)
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		if r.listenOnce(ctx) {
			backoff = 50 * time.Millisecond
		}
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
}

// listenOnce runs one subscription; it reports whether it got as far as
// being subscribed.
func (r *Redis) listenOnce(ctx context.Context) bool {
	r.psMu.Lock()
	if ctx.Err() != nil {
		r.psMu.Unlock()
		return false
	}
	ps := r.client.Subscribe(ctx, r.channel)
	r.ps = ps
	r.psMu.Unlock()
	defer func() {
		r.psMu.Lock()
		r.ps = nil
		r.psMu.Unlock()
		_ = ps.Close()
	}()
	msg, err := ps.ReceiveTimeout(ctx, heartbeatTimeout)
	if err != nil {
		return false
	}
	if _, ok := msg.(*redis.Subscription); !ok {
		return false
	}
	r.setCoherent(true)
	defer r.setCoherent(false)
	pctx, stopPing := context.WithCancel(ctx)
	defer stopPing()
	go func() {
		t := time.NewTicker(heartbeatEvery)
		defer t.Stop()
		for {
			select {
			case <-pctx.Done():
				return
			case <-t.C:
				_ = ps.Ping(pctx)
			}
		}
	}()
	for {
		msg, err := ps.ReceiveTimeout(ctx, heartbeatTimeout)
		if err != nil {
			return true
		}
		if m, ok := msg.(*redis.Message); ok {
			r.each(func(w watcher) { w.changed(m.Payload) })
		}
	}
}
