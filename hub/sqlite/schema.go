package sqlite

import (
	"context"
	"database/sql"
	"fmt"
)

// migrations[i] takes a database from schema version i to i+1 (PRAGMA
// user_version). Append to it; never change a step that has shipped.
var migrations = []string{
	// 1: events, in each room's order, and each room's seq counter (kept
	// after its events expire, so that a seq is never given twice).
	`CREATE TABLE events (
		id INTEGER PRIMARY KEY,
		room TEXT NOT NULL,
		seq INTEGER NOT NULL,
		kind INTEGER NOT NULL,
		time INTEGER NOT NULL, -- unix microseconds
		from_id INTEGER NOT NULL,
		from_nick TEXT NOT NULL,
		subject_id INTEGER NOT NULL,
		subject_nick TEXT NOT NULL,
		old_nick TEXT NOT NULL,
		text TEXT NOT NULL,
		reason TEXT NOT NULL,
		UNIQUE (room, seq)
	);
	CREATE TABLE rooms (name TEXT PRIMARY KEY, last_seq INTEGER NOT NULL, last_time INTEGER NOT NULL) WITHOUT ROWID;
	CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;`,

	// 2: full-text search over messages. The trigram tokenizer indexes
	// every run of three characters, so text without spaces between words
	// (Chinese, Japanese) is searchable, and a LIKE pattern uses the index.
	// Messages are indexed in the background (Store.index), not as they
	// are written: meta's fts_indexed is the highest events.id indexed, and
	// a deleted message leaves the index only if it was in it.
	`CREATE VIRTUAL TABLE events_fts USING fts5(text, content='events', content_rowid='id', tokenize='trigram');
	INSERT INTO meta (key, value) VALUES ('fts_indexed', '0');
	CREATE TRIGGER events_fts_delete AFTER DELETE ON events
		WHEN old.kind = 1 AND old.id <= (SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'fts_indexed') BEGIN
		INSERT INTO events_fts (events_fts, rowid, text) VALUES ('delete', old.id, old.text);
	END;`,
}

// migrate brings db to schema version target, one transaction per step.
// A database newer than this code knows is refused, untouched.
func migrate(ctx context.Context, db *sql.DB, target int) error {
	var version int
	if err := db.QueryRowContext(ctx, `PRAGMA user_version`).Scan(&version); err != nil {
		return fmt.Errorf("read schema version (is it an SQLite database?): %w", err)
	}
	if version > len(migrations) {
		return fmt.Errorf("%w: schema version %d, this chatd knows up to %d", ErrTooNew, version, len(migrations))
	}
	for ; version < target; version++ {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("migrate to version %d: %w", version+1, err)
		}
		if _, err := tx.ExecContext(ctx, migrations[version]); err != nil {
			_ = tx.Rollback()
			return fmt.Errorf("migrate to version %d: %w", version+1, err)
		}
		if _, err := tx.ExecContext(ctx, fmt.Sprintf(`PRAGMA user_version = %d`, version+1)); err != nil {
			_ = tx.Rollback()
			return fmt.Errorf("migrate to version %d: %w", version+1, err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("migrate to version %d: %w", version+1, err)
		}
	}
	return nil
}
