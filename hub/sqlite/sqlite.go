// Package sqlite keeps the chat's history in an SQLite database file
// (modernc.org/sqlite: no cgo), so that nothing said is lost to a restart.
// A Store is both the hub's Journal (every sequenced event is written
// before anyone sees it) and its History (joins, resumes, scroll-back and
// search read it).
//
// # How it works
//
//   - Writes. The hub's broker (hub.NewJournaledBroker) calls Write from
//     one goroutine with every event published since its last write: one
//     transaction per batch (group commit), so a burst of messages costs
//     one commit, not one each. The database is in WAL mode; Options.Sync
//     says whether a commit waits for the disk (FULL) or only for the
//     operating system (NORMAL: the default).
//   - Reads under the hub's locks (Append, Recent, After: a join or a
//     resume) never touch the disk: they are served by an in-memory cache
//     (a hub.MemoryHistory) of each room's latest events, loaded from the
//     file at Open and then fed by the hub as it delivers. Scroll-back
//     (Before) and Search read the file, on the asking member's goroutine.
//   - Rooms' seq counters live in the file (table rooms) and are never
//     deleted, so a room's order continues across restarts and a (room,
//     seq) is never given twice, even after its history has expired.
//   - Retention runs in the background every RetentionInterval: each room
//     keeps its latest Retain messages, none older than MaxAge.
//   - One process at a time: Open takes an exclusive lock on PATH.lock.
//   - The schema is versioned (PRAGMA user_version) and migrated at Open;
//     a file from a newer chatd is refused, untouched.
package sqlite

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	_ "modernc.org/sqlite" // the database/sql driver "sqlite"

	"chatroom/hub"
)

// Defaults for Options.
const (
	DefaultRetain            = 10000
	DefaultRetentionInterval = time.Minute
	DefaultCacheEvents       = 1000
)

// Options configure a Store. The zero value of every field but Path is a
// documented default.
type Options struct {
	// Path is the database file; it is created if missing.
	Path string
	// Retain is how many messages each room keeps (older ones are deleted
	// in the background). Default DefaultRetain; negative: no limit.
	Retain int
	// MaxAge deletes messages older than this. Default: none.
	MaxAge time.Duration
	// RetentionInterval is how often retention runs. Default
	// DefaultRetentionInterval.
	RetentionInterval time.Duration
	// Sync is SQLite's synchronous setting: "normal" (the default: a
	// commit survives the process being killed, and may be lost with the
	// last second or so of commits if the machine loses power) or "full"
	// (a commit waits for the disk and survives power loss).
	Sync string
	// CacheEvents and CacheBytes bound the in-memory cache of each room's
	// latest events (see hub.MemoryHistory). Defaults DefaultCacheEvents
	// and hub.DefaultHistoryRetainBytes.
	CacheEvents, CacheBytes int
	// MaxRooms bounds the rooms whose caches are loaded at Open, the most
	// recently active first. Default hub.DefaultMaxRooms.
	MaxRooms int
	// MaxPageCount, if set, caps the database's size in pages (4 KiB): a
	// write past it fails as a full disk would. For tests.
	MaxPageCount int
	// Logger receives errors and retention reports. Default: discard.
	Logger *slog.Logger
}

// Store is an open database. Its methods are safe for concurrent use.
type Store struct {
	opts  Options
	db    *sql.DB
	lock  *os.File
	epoch string
	cache *hub.MemoryHistory
	log   *slog.Logger

	insertEvent, insertEvents, upsertRoom *sql.Stmt // insertEvents: insertRows rows at once

	// writeMu makes the journal's writes, the indexer and retention take
	// turns in the process rather than contend for SQLite's write lock,
	// whose busy handler sleeps in steps of up to 50 ms: a write waits
	// exactly as long as the one before it takes.
	writeMu sync.Mutex

	mu       sync.Mutex // guards writeErr
	writeErr error      // the last Write's failure; nil once one succeeds

	lastWrite atomic.Int64 // unix nanos of the last Write: the indexer keeps out of its way

	stop      chan struct{}
	done      chan struct{} // closed when retention has stopped
	indexDone chan struct{} // closed when the indexer has stopped
	closeOnce sync.Once
}

// ErrLocked is returned by Open when another process has the file open.
var ErrLocked = errors.New("database is in use by another chatd")

// ErrTooNew is returned by Open for a file written by a newer chatd.
var ErrTooNew = errors.New("database was written by a newer chatd")

// Open opens (creating or migrating) the database at opts.Path and loads
// the cache of each room's latest events.
func Open(ctx context.Context, opts Options) (*Store, error) {
	if opts.Retain == 0 {
		opts.Retain = DefaultRetain
	}
	if opts.RetentionInterval <= 0 {
		opts.RetentionInterval = DefaultRetentionInterval
	}
	if opts.CacheEvents <= 0 {
		opts.CacheEvents = DefaultCacheEvents
	}
	if opts.MaxRooms <= 0 {
		opts.MaxRooms = hub.DefaultMaxRooms
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	syncMode := "NORMAL"
	switch strings.ToLower(opts.Sync) {
	case "", "normal":
	case "full":
		syncMode = "FULL"
	default:
		return nil, fmt.Errorf("sqlite: sync %q: want normal or full", opts.Sync)
	}
	lock, err := lockFile(opts.Path + ".lock")
	if err != nil {
		return nil, err
	}
	s := &Store{opts: opts, lock: lock, log: opts.Logger,
		cache: &hub.MemoryHistory{Retain: opts.CacheEvents, RetainBytes: opts.CacheBytes},
		stop:  make(chan struct{}), done: make(chan struct{}), indexDone: make(chan struct{})}
	fail := func(err error) (*Store, error) {
		if s.db != nil {
			_ = s.db.Close()
		}
		_ = lock.Close()
		return nil, err
	}
	dsn := "file:" + opts.Path + "?_pragma=journal_mode(WAL)&_pragma=synchronous(" + syncMode + ")&_pragma=busy_timeout(10000)&_pragma=wal_autocheckpoint(0)&_txlock=immediate"
	if opts.MaxPageCount > 0 {
		dsn += fmt.Sprintf("&_pragma=max_page_count(%d)", opts.MaxPageCount)
	}
	if s.db, err = sql.Open("sqlite", dsn); err != nil {
		return fail(fmt.Errorf("sqlite: open %s: %w", opts.Path, err))
	}
	s.db.SetMaxOpenConns(4)
	if err := migrate(ctx, s.db, len(migrations)); err != nil {
		return fail(fmt.Errorf("sqlite: %s: %w", opts.Path, err))
	}
	if s.epoch, err = loadEpoch(ctx, s.db); err != nil {
		return fail(fmt.Errorf("sqlite: %s: %w", opts.Path, err))
	}
	if s.insertEvent, err = s.db.PrepareContext(ctx, insertSQL(1)); err != nil {
		return fail(fmt.Errorf("sqlite: prepare: %w", err))
	}
	if s.insertEvents, err = s.db.PrepareContext(ctx, insertSQL(insertRows)); err != nil {
		return fail(fmt.Errorf("sqlite: prepare: %w", err))
	}
	if s.upsertRoom, err = s.db.PrepareContext(ctx, `INSERT INTO rooms (name, last_seq, last_time) VALUES (?, ?, ?)
		ON CONFLICT (name) DO UPDATE SET last_seq = max(last_seq, excluded.last_seq), last_time = max(last_time, excluded.last_time)`); err != nil {
		return fail(fmt.Errorf("sqlite: prepare: %w", err))
	}
	if err := s.loadCache(ctx); err != nil {
		return fail(fmt.Errorf("sqlite: %s: load history: %w", opts.Path, err))
	}
	go s.retentionLoop()
	go s.indexLoop()
	return s, nil
}

// lockFile takes an exclusive lock on path, or fails with ErrLocked.
func lockFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("sqlite: lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("sqlite: %s: %w", strings.TrimSuffix(path, ".lock"), ErrLocked)
		}
		return nil, fmt.Errorf("sqlite: lock %s: %w", path, err)
	}
	return f, nil
}

// loadEpoch reads the database's epoch, creating it with the file.
func loadEpoch(ctx context.Context, db *sql.DB) (string, error) {
	var b [8]byte
	_, _ = rand.Read(b[:])
	if _, err := db.ExecContext(ctx, `INSERT INTO meta (key, value) VALUES ('epoch', ?) ON CONFLICT DO NOTHING`, hex.EncodeToString(b[:])); err != nil {
		return "", fmt.Errorf("epoch: %w", err)
	}
	var epoch string
	if err := db.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = 'epoch'`).Scan(&epoch); err != nil {
		return "", fmt.Errorf("epoch: %w", err)
	}
	return epoch, nil
}

// Close stops retention and closes the database and its lock. Closing
// again does nothing.
func (s *Store) Close() error {
	var err error
	s.closeOnce.Do(func() {
		close(s.stop)
		<-s.done
		<-s.indexDone
		err = s.db.Close()
		_ = s.lock.Close()
	})
	return err
}

// Epoch is the database's epoch, made with the file (hub.Options.Epoch):
// positions to resume from stay valid across restarts.
func (s *Store) Epoch() string { return s.epoch }

// Err reports whether the store can persist: the error of the last write
// if it failed (nil once one succeeds). /readyz uses it.
func (s *Store) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.writeErr
}

// Rooms lists the rooms that still have history, the most recently active
// first, at most MaxRooms: the rooms that exist after a restart.
func (s *Store) Rooms(ctx context.Context) ([]string, error) {
	return s.roomsWithHistory(ctx, s.opts.MaxRooms)
}

// roomsWithHistory lists up to limit rooms that have events, the most
// recently active first (limit -1: all).
func (s *Store) roomsWithHistory(ctx context.Context, limit int) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT name FROM rooms WHERE EXISTS (SELECT 1 FROM events WHERE room = name)
		ORDER BY last_time DESC LIMIT ?`, limit)
	if err != nil {
		return nil, fmt.Errorf("sqlite: rooms: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return nil, fmt.Errorf("sqlite: rooms: %w", err)
		}
		out = append(out, name)
	}
	return out, rows.Err()
}

// loadCache fills the cache with each room's latest events.
func (s *Store) loadCache(ctx context.Context) error {
	rooms, err := s.Rooms(ctx)
	if err != nil {
		return err
	}
	for _, room := range rooms {
		evs, err := s.query(ctx, `SELECT `+eventColumns+` FROM events WHERE room = ? ORDER BY seq DESC LIMIT ?`, room, s.opts.CacheEvents)
		if err != nil {
			return err
		}
		for i := len(evs) - 1; i >= 0; i-- {
			s.cache.Append(evs[i])
		}
	}
	return nil
}

// LastSeq implements hub.Journal.
func (s *Store) LastSeq(room string) (uint64, error) {
	var seq uint64
	err := s.db.QueryRow(`SELECT last_seq FROM rooms WHERE name = ?`, room).Scan(&seq)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("sqlite: last seq of %s: %w", room, err)
	}
	return seq, nil
}

// Write implements hub.Journal: the events and their rooms' counters in
// one transaction.
func (s *Store) Write(events []*hub.Event) error {
	return s.writeWith(events, nil)
}

// WriteThrough implements the cluster's Journal (hub/nats): the events
// (any already here are skipped) and the stream position the copy now
// ends at, in one transaction.
func (s *Store) WriteThrough(events []*hub.Event, cursor uint64) error {
	return s.writeWith(events, func(tx *sql.Tx) error {
		if _, err := tx.Exec(`INSERT INTO meta (key, value) VALUES ('cluster_cursor', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value`, strconv.FormatUint(cursor, 10)); err != nil {
			return fmt.Errorf("sqlite: cursor: %w", err)
		}
		return nil
	})
}

// Resume implements the cluster's Journal: where this copy of the
// cluster's history ends. The first time, the file is bound to the
// cluster's epoch; a file that holds another history (a chatd alone, or
// another cluster) is refused, so that two histories never mix.
func (s *Store) Resume(epoch string) (uint64, error) {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	var bound string
	err := s.db.QueryRow(`SELECT value FROM meta WHERE key = 'cluster'`).Scan(&bound)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		var any int
		if err := s.db.QueryRow(`SELECT count(*) FROM (SELECT 1 FROM rooms LIMIT 1)`).Scan(&any); err != nil {
			return 0, fmt.Errorf("sqlite: %w", err)
		}
		if any > 0 {
			return 0, fmt.Errorf("sqlite: %s holds the history of a chatd alone, not of this cluster: give this node a database of its own", s.opts.Path)
		}
		if _, err := s.db.Exec(`INSERT INTO meta (key, value) VALUES ('cluster', ?), ('cluster_cursor', '0')`, epoch); err != nil {
			return 0, fmt.Errorf("sqlite: bind to the cluster: %w", err)
		}
		return 0, nil
	case err != nil:
		return 0, fmt.Errorf("sqlite: %w", err)
	case bound != epoch:
		return 0, fmt.Errorf("sqlite: %s holds the history of another cluster (epoch %s, not %s): give this node a database of its own", s.opts.Path, bound, epoch)
	}
	var cursor uint64
	if err := s.db.QueryRow(`SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'cluster_cursor'`).Scan(&cursor); err != nil {
		return 0, fmt.Errorf("sqlite: cursor: %w", err)
	}
	return cursor, nil
}

// writeWith writes events and, if also is not nil, what it adds to the
// same transaction, recording the outcome for Err.
func (s *Store) writeWith(events []*hub.Event, also func(*sql.Tx) error) error {
	s.lastWrite.Store(time.Now().UnixNano())
	err := s.write(events, also)
	s.mu.Lock()
	s.writeErr = err
	s.mu.Unlock()
	if err != nil {
		s.log.Error("cannot save history", "events", len(events), "err", err)
	}
	return err
}

func (s *Store) write(events []*hub.Event, also func(*sql.Tx) error) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	tx, err := s.db.Begin()
	if err != nil {
		return fmt.Errorf("sqlite: begin: %w", err)
	}
	defer func() { _ = tx.Rollback() }() // after a commit, a no-op
	insert, insertMany, upsert := tx.Stmt(s.insertEvent), tx.Stmt(s.insertEvents), tx.Stmt(s.upsertRoom)
	last := make(map[string]*hub.Event, 1)
	args := make([]any, 0, insertColumns*insertRows)
	for rest := events; len(rest) > 0; {
		stmt, n := insertMany, insertRows
		if len(rest) < insertRows {
			stmt, n = insert, 1
		}
		args = args[:0]
		for _, ev := range rest[:n] {
			args = append(args, ev.Room, ev.Seq, int(ev.Kind), ev.Time.UnixMicro(), ev.From.ID, ev.From.Nickname,
				ev.Subject.ID, ev.Subject.Nickname, ev.OldNickname, ev.Text, ev.Reason)
			last[ev.Room] = ev
		}
		if _, err := stmt.Exec(args...); err != nil {
			return fmt.Errorf("sqlite: insert %s/%d: %w", rest[0].Room, rest[0].Seq, err)
		}
		rest = rest[n:]
	}
	for room, ev := range last {
		if _, err := upsert.Exec(room, ev.Seq, ev.Time.UnixMicro()); err != nil {
			return fmt.Errorf("sqlite: room %s: %w", room, err)
		}
	}
	if also != nil {
		if err := also(tx); err != nil {
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: commit: %w", err)
	}
	return nil
}

// Append implements hub.History: the hub delivered ev (already written).
func (s *Store) Append(ev *hub.Event) { s.cache.Append(ev) }

// Recent implements hub.History, from the cache.
func (s *Store) Recent(room string, n int) []*hub.Event { return s.cache.Recent(room, n) }

// After implements hub.History, from the cache: a member that missed more
// than the cache holds gets a gap, and scrolls back (Before) for the rest.
func (s *Store) After(room string, seq uint64, n int) ([]*hub.Event, bool) {
	return s.cache.After(room, seq, n)
}

// ForgetRoom implements hub.RoomForgetter: the hub removed the empty
// room; its cache goes (its history stays in the file, by retention).
func (s *Store) ForgetRoom(room string) { s.cache.ForgetRoom(room) }

// Before implements hub.History, from the file.
func (s *Store) Before(room string, seq uint64, n int) ([]*hub.Event, error) {
	evs, err := s.query(context.Background(), `SELECT `+eventColumns+` FROM events
		WHERE room = ? AND seq < ? AND kind = ? ORDER BY seq DESC LIMIT ?`, room, seq, int(hub.KindMessage), n)
	if err != nil {
		return nil, err
	}
	reverse(evs)
	return evs, nil
}

// Search implements hub.History with the file's full-text index (FTS5,
// trigram tokenizer: it matches any run of characters, so Chinese and other
// text without spaces is found too), plus a scan of the room's messages
// that have not reached the index yet (see indexLoop). The query is matched
// as a plain substring, ignoring ASCII case: no character in it has a
// meaning of its own (FTS syntax, LIKE wildcards).
func (s *Store) Search(room, query string, n int) ([]*hub.Event, error) {
	pattern := "%" + escapeLike(query) + "%"
	return s.query(context.Background(), `
		SELECT `+eventColumns+` FROM events
			WHERE room = ?1 AND kind = ?2 AND text LIKE ?3 ESCAPE '\'
			AND id > (SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'fts_indexed')
		UNION ALL
		SELECT `+prefixed("e.", eventColumns)+` FROM events_fts JOIN events e ON e.id = events_fts.rowid
			WHERE events_fts.text LIKE ?3 ESCAPE '\' AND e.room = ?1 AND e.kind = ?2
			AND e.id <= (SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'fts_indexed')
		ORDER BY seq DESC LIMIT ?4`, room, int(hub.KindMessage), pattern, n)
}

// escapeLike makes s match itself in a LIKE pattern with ESCAPE '\'.
func escapeLike(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

// insertRows is how many events one multi-row INSERT takes: a batch is
// written insertRows at a time, the rest one by one (fewer statements:
// most of a row's cost is the statement's, not the row's).
const (
	insertRows    = 32
	insertColumns = 11
)

// insertSQL is an INSERT of rows events.
func insertSQL(rows int) string {
	values := strings.TrimSuffix(strings.Repeat("(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?), ", rows), ", ")
	return `INSERT INTO events (room, seq, kind, time, from_id, from_nick, subject_id, subject_nick, old_nick, text, reason) VALUES ` + values +
		` ON CONFLICT (room, seq) DO NOTHING` // a cluster node may read an event twice
}

const eventColumns = `room, seq, kind, time, from_id, from_nick, subject_id, subject_nick, old_nick, text, reason`

// prefixed qualifies each column of cols with p.
func prefixed(p, cols string) string {
	parts := strings.Split(cols, ", ")
	for i := range parts {
		parts[i] = p + parts[i]
	}
	return strings.Join(parts, ", ")
}

// query runs a query selecting eventColumns.
func (s *Store) query(ctx context.Context, q string, args ...any) ([]*hub.Event, error) {
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: query: %w", err)
	}
	defer rows.Close()
	var out []*hub.Event
	for rows.Next() {
		ev := &hub.Event{}
		var kind int
		var micros int64
		if err := rows.Scan(&ev.Room, &ev.Seq, &kind, &micros, &ev.From.ID, &ev.From.Nickname,
			&ev.Subject.ID, &ev.Subject.Nickname, &ev.OldNickname, &ev.Text, &ev.Reason); err != nil {
			return nil, fmt.Errorf("sqlite: scan: %w", err)
		}
		ev.Kind, ev.Time = hub.Kind(kind), time.UnixMicro(micros)
		out = append(out, ev)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: query: %w", err)
	}
	return out, nil
}

func reverse(evs []*hub.Event) {
	for i, j := 0, len(evs)-1; i < j; i, j = i+1, j-1 {
		evs[i], evs[j] = evs[j], evs[i]
	}
}

var (
	_ hub.Journal       = (*Store)(nil)
	_ hub.History       = (*Store)(nil)
	_ hub.RoomForgetter = (*Store)(nil)
)
