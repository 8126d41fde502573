package sqlite

import (
	"context"
	"fmt"
	"time"
)

// retentionBatch bounds the rows one retention transaction deletes, so
// that the writer (which the hub's deliveries wait on) is never held up
// for long: retention runs between its commits.
const retentionBatch = 500

// retentionLoop enforces Retain and MaxAge every RetentionInterval until
// Close.
func (s *Store) retentionLoop() {
	defer close(s.done)
	t := time.NewTicker(s.opts.RetentionInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			n, err := s.Retain(context.Background(), time.Now())
			switch {
			case err != nil:
				s.log.Error("history retention", "err", err)
			case n > 0:
				s.log.Info("history retention", "deleted", n)
			}
		}
	}
}

// Retain deletes what retention no longer keeps as of now (each room's
// messages past its latest Retain, and everything older than MaxAge) and
// returns how many events it deleted. Rooms' seq counters stay.
func (s *Store) Retain(ctx context.Context, now time.Time) (int64, error) {
	var total int64
	deleteBatches := func(q string, args ...any) error {
		for {
			select {
			case <-s.stop:
				return nil
			default:
			}
			s.writeMu.Lock()
			res, err := s.db.ExecContext(ctx, q, args...)
			s.writeMu.Unlock()
			if err != nil {
				return err
			}
			n, _ := res.RowsAffected()
			total += n
			if n < retentionBatch {
				return nil
			}
		}
	}
	if s.opts.Retain > 0 {
		// Count per room in messages: a room keeps its latest Retain
		// messages and whatever joins and leaves came after the oldest.
		rooms, err := s.roomsWithHistory(ctx, -1)
		if err != nil {
			return total, err
		}
		for _, room := range rooms {
			var cut int64
			err := s.db.QueryRowContext(ctx, `SELECT seq FROM events WHERE room = ? AND kind = 1
				ORDER BY seq DESC LIMIT 1 OFFSET ?`, room, s.opts.Retain).Scan(&cut)
			if err != nil {
				continue // fewer than Retain messages: nothing to cut
			}
			if err := deleteBatches(`DELETE FROM events WHERE id IN
				(SELECT id FROM events WHERE room = ? AND seq <= ? LIMIT ?)`, room, cut, retentionBatch); err != nil {
				return total, fmt.Errorf("sqlite: retention of %s: %w", room, err)
			}
		}
	}
	if s.opts.MaxAge > 0 {
		// Times rise with seq in each room, so a room's old events are a
		// prefix of its order; no index on time (one less to update on
		// every write) is needed to find where it ends.
		cutoff := now.Add(-s.opts.MaxAge).UnixMicro()
		rooms, err := s.roomsWithHistory(ctx, -1)
		if err != nil {
			return total, err
		}
		for _, room := range rooms {
			var cut int64
			if err := s.db.QueryRowContext(ctx, `SELECT coalesce(max(seq), 0) FROM events WHERE room = ? AND time < ?`, room, cutoff).Scan(&cut); err != nil || cut == 0 {
				continue
			}
			if err := deleteBatches(`DELETE FROM events WHERE id IN
				(SELECT id FROM events WHERE room = ? AND seq <= ? LIMIT ?)`, room, cut, retentionBatch); err != nil {
				return total, fmt.Errorf("sqlite: retention of %s by age: %w", room, err)
			}
		}
	}
	return total, nil
}
