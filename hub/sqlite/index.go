package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// Messages enter the full-text index in the background, not in the
// transaction that writes them: indexing a message costs several times
// what writing it does (FTS5's trigram tokenizer, in modernc's transpiled
// C), and writes are what every member's delivery waits for. The indexer
// runs when writes pause (none for indexIdle), in transactions of
// indexBatch messages. A search reads the index and scans the room's
// messages that have not reached it yet, so an index that falls behind
// under sustained load costs searches a scan bounded by retention (each
// room keeps at most Retain messages), never a result. Past indexBacklog
// unindexed events it indexes anyway, as a bound on that scan.
const (
	indexEvery   = 100 * time.Millisecond
	indexIdle    = 20 * time.Millisecond
	indexBatch   = 1000
	indexBacklog = 1_000_000
)

// indexLoop indexes in the background until Close.
func (s *Store) indexLoop() {
	defer close(s.indexDone)
	t := time.NewTicker(indexEvery)
	defer t.Stop()
	var ticks int
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		if ticks++; ticks%checkpointEvery == 0 {
			s.checkpoint()
		}
		for {
			busy := time.Since(time.Unix(0, s.lastWrite.Load())) < indexIdle
			backlog, err := s.backlog()
			if err != nil || backlog == 0 || (busy && backlog < indexBacklog) {
				break
			}
			if _, err := s.indexOnce(context.Background(), indexBatch); err != nil {
				s.log.Error("search index", "err", err)
				break
			}
			select {
			case <-s.stop:
				return
			default:
			}
		}
	}
}

// checkpointEvery is how many indexer ticks pass between two checkpoints.
const checkpointEvery = 10

// checkpoint copies the WAL's committed pages into the database file, off
// the writer's path: the writer never checkpoints (wal_autocheckpoint 0),
// so a commit never waits for one. PASSIVE: it does not block writers.
func (s *Store) checkpoint() {
	if _, err := s.db.Exec(`PRAGMA wal_checkpoint(PASSIVE)`); err != nil {
		s.log.Error("checkpoint", "err", err)
	}
}

// Index indexes every message written so far and returns how many events
// it went through.
func (s *Store) Index(ctx context.Context) (int64, error) {
	var total int64
	for {
		n, err := s.indexOnce(ctx, indexBatch)
		total += n
		if err != nil || n == 0 {
			return total, err
		}
	}
}

// backlog is how many events (of any kind) are past the index's mark.
func (s *Store) backlog() (int64, error) {
	var top, done sql.NullInt64
	err := s.db.QueryRow(`SELECT (SELECT max(id) FROM events), (SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'fts_indexed')`).Scan(&top, &done)
	if err != nil {
		return 0, fmt.Errorf("sqlite: index backlog: %w", err)
	}
	return max(0, top.Int64-done.Int64), nil
}

// indexOnce indexes the messages among the next limit events past the
// mark, moves the mark, and returns how many events it went through.
func (s *Store) indexOnce(ctx context.Context, limit int) (int64, error) {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("sqlite: index: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	var done int64
	if err := tx.QueryRowContext(ctx, `SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'fts_indexed'`).Scan(&done); err != nil {
		return 0, fmt.Errorf("sqlite: index mark: %w", err)
	}
	var hi sql.NullInt64
	var n int64
	if err := tx.QueryRowContext(ctx, `SELECT max(id), count(*) FROM (SELECT id FROM events WHERE id > ? ORDER BY id LIMIT ?)`, done, limit).Scan(&hi, &n); err != nil {
		return 0, fmt.Errorf("sqlite: index: %w", err)
	}
	if !hi.Valid {
		return 0, nil
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO events_fts (rowid, text) SELECT id, text FROM events WHERE id > ? AND id <= ? AND kind = 1`, done, hi.Int64); err != nil {
		return 0, fmt.Errorf("sqlite: index: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE meta SET value = ? WHERE key = 'fts_indexed'`, hi.Int64); err != nil {
		return 0, fmt.Errorf("sqlite: index mark: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("sqlite: index: %w", err)
	}
	return n, nil
}
