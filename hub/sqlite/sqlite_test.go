package sqlite

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"chatroom/hub"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func open(t *testing.T, path string, mutate ...func(*Options)) *Store {
	t.Helper()
	opts := Options{Path: path}
	for _, f := range mutate {
		f(&opts)
	}
	s, err := Open(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func msgEvent(room string, seq uint64, text string) *hub.Event {
	return &hub.Event{Kind: hub.KindMessage, Room: room, Seq: seq, Time: time.Now(),
		From: hub.Identity{ID: 7, Nickname: "alice"}, Text: text}
}

// write writes n messages to room after its last seq, as the broker does.
func write(t *testing.T, s *Store, room string, texts ...string) {
	t.Helper()
	last, err := s.LastSeq(room)
	if err != nil {
		t.Fatal(err)
	}
	var evs []*hub.Event
	for i, text := range texts {
		evs = append(evs, msgEvent(room, last+uint64(i)+1, text))
	}
	if err := s.Write(evs); err != nil {
		t.Fatal(err)
	}
	for _, ev := range evs {
		s.Append(ev) // as the hub does on delivering it
	}
}

func TestWriteReadAcrossReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "chat.db")
	s := open(t, path)
	epoch := s.Epoch()
	write(t, s, "go", "one", "two", "three")
	join := &hub.Event{Kind: hub.KindJoin, Room: "go", Seq: 4, Time: time.Now(), From: hub.System,
		Subject: hub.Identity{ID: 9, Nickname: "bob"}}
	if err := s.Write([]*hub.Event{join}); err != nil {
		t.Fatal(err)
	}
	s.Append(join)
	s.Close()

	s = open(t, path)
	if s.Epoch() != epoch {
		t.Fatalf("epoch %q after reopening, was %q", s.Epoch(), epoch)
	}
	if last, _ := s.LastSeq("go"); last != 4 {
		t.Fatalf("last seq %d after reopening, want 4", last)
	}
	if rooms, _ := s.Rooms(context.Background()); len(rooms) != 1 || rooms[0] != "go" {
		t.Fatalf("rooms %v", rooms)
	}
	recent := s.Recent("go", 10)
	if len(recent) != 3 || recent[2].Text != "three" || recent[2].From.Nickname != "alice" {
		t.Fatalf("recent after reopening: %v", recent)
	}
	after, ok := s.After("go", 2, 100)
	if !ok || len(after) != 2 || after[0].Text != "three" || after[1].Kind != hub.KindJoin || after[1].Subject.Nickname != "bob" {
		t.Fatalf("after 2: %v %v", after, ok)
	}
	before, err := s.Before("go", 3, 10)
	if err != nil || len(before) != 2 || before[0].Text != "one" {
		t.Fatalf("before 3: %v %v", before, err)
	}
}

func TestSecondOpenIsRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "chat.db")
	open(t, path)
	if _, err := Open(context.Background(), Options{Path: path}); !errors.Is(err, ErrLocked) {
		t.Fatalf("second open: %v, want ErrLocked", err)
	}
}

func TestNewerSchemaAndGarbageAreRefusedUntouched(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "chat.db")
	s := open(t, path)
	if _, err := s.db.Exec(fmt.Sprintf(`PRAGMA user_version = %d`, len(migrations)+1)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	_, err := Open(context.Background(), Options{Path: path})
	if !errors.Is(err, ErrTooNew) {
		t.Fatalf("newer schema: %v, want ErrTooNew", err)
	}

	garbage := filepath.Join(dir, "garbage.db")
	junk := []byte(strings.Repeat("this is not a database ", 500))
	if err := os.WriteFile(garbage, junk, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(context.Background(), Options{Path: garbage}); err == nil || !strings.Contains(err.Error(), "garbage.db") {
		t.Fatalf("garbage file: %v, want an error naming it", err)
	}
	if got, _ := os.ReadFile(garbage); string(got) != string(junk) {
		t.Fatal("the garbage file was changed")
	}
}

// TestMigrationFromTheFirstVersion: a file of schema 1 (no search index)
// gets the index at Open, with the messages it already held.
func TestMigrationFromTheFirstVersion(t *testing.T) {
	path := filepath.Join(t.TempDir(), "chat.db")
	s := open(t, path)
	s.Close()
	// Make a schema-1 file with a message in it, as an older chatd left it.
	old := filepath.Join(t.TempDir(), "old.db")
	s1, err := Open(context.Background(), Options{Path: old})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s1.db.Exec(`DROP TRIGGER events_fts_delete; DROP TABLE events_fts; DELETE FROM meta WHERE key = 'fts_indexed'; PRAGMA user_version = 1`); err != nil {
		t.Fatal(err)
	}
	write(t, s1, "lobby", "deploy went fine", "lunch?")
	s1.Close()

	s2 := open(t, old)
	for _, stage := range []string{"migrated", "indexed"} {
		got, err := s2.Search("lobby", "deploy", 10)
		if err != nil || len(got) != 1 || got[0].Text != "deploy went fine" {
			t.Fatalf("search, %s: %v %v", stage, got, err)
		}
		if _, err := s2.Index(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	var version int
	_ = s2.db.QueryRow(`PRAGMA user_version`).Scan(&version)
	if version != len(migrations) {
		t.Fatalf("schema version %d after migrating, want %d", version, len(migrations))
	}
}

func TestSearch(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "chat.db"))
	// The seed tutorial's own strings, and a few in English.
	write(t, s, "lobby", "用户 carol(4)加入聊天室", "你好，欢迎来到聊天室", "Deploy at 5", "the deploy is done",
		`100% sure_thing "quoted" NEAR(x) -minus`)
	write(t, s, "other", "deploy elsewhere")
	cases := map[string][]string{
		"聊天室":       {"你好，欢迎来到聊天室", "用户 carol(4)加入聊天室"},
		"你好":        {"你好，欢迎来到聊天室"}, // two characters: below a trigram, still found
		"deploy":    {"the deploy is done", "Deploy at 5"},
		"DEPLOY":    {"the deploy is done", "Deploy at 5"},
		"100%":      {`100% sure_thing "quoted" NEAR(x) -minus`},
		"_thing":    {`100% sure_thing "quoted" NEAR(x) -minus`},
		`"quoted"`:  {`100% sure_thing "quoted" NEAR(x) -minus`},
		"NEAR(":     {`100% sure_thing "quoted" NEAR(x) -minus`},
		"-minus":    {`100% sure_thing "quoted" NEAR(x) -minus`},
		"%":         {`100% sure_thing "quoted" NEAR(x) -minus`},
		"nothing":   nil,
		`\`:         nil,
		"elsewhere": nil, // another room
	}
	check := func(stage string) {
		t.Helper()
		for q, want := range cases {
			got, err := s.Search("lobby", q, 10)
			if err != nil {
				t.Errorf("%s: search %q: %v", stage, q, err)
				continue
			}
			var texts []string
			for _, ev := range got {
				texts = append(texts, ev.Text)
			}
			if strings.Join(texts, "|") != strings.Join(want, "|") {
				t.Errorf("%s: search %q = %q, want %q", stage, q, texts, want)
			}
		}
	}
	check("before indexing") // the scan of what the index has not reached
	if n, err := s.Index(context.Background()); err != nil || n != 6 {
		t.Fatalf("indexed %d events (%v), want 6", n, err)
	}
	check("indexed")
	write(t, s, "lobby", "聊天室 once more, after indexing")
	cases["聊天室"] = append([]string{"聊天室 once more, after indexing"}, cases["聊天室"]...)
	check("partly indexed")
	if _, err := s.db.Exec(`INSERT INTO events_fts (events_fts) VALUES ('integrity-check')`); err != nil {
		t.Fatalf("index integrity: %v", err)
	}
}

func TestRetentionByCountAndAge(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "chat.db"), func(o *Options) { o.Retain = 5; o.MaxAge = time.Hour })
	for i := range 12 {
		write(t, s, "go", fmt.Sprint("m", i))
		if i == 5 { // half of them indexed: retention deletes both kinds
			if _, err := s.Index(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
	}
	old := msgEvent("old", 1, "ancient")
	old.Time = time.Now().Add(-2 * time.Hour)
	if err := s.Write([]*hub.Event{old}); err != nil {
		t.Fatal(err)
	}
	n, err := s.Retain(context.Background(), time.Now())
	if err != nil || n != 8 {
		t.Fatalf("retention deleted %d (%v), want 7 by count and 1 by age", n, err)
	}
	got, _ := s.Before("go", 1000, 100)
	if len(got) != 5 || got[0].Text != "m7" {
		t.Fatalf("after retention: %d messages from %q, want the latest 5", len(got), got[0].Text)
	}
	if found, _ := s.Search("go", "m3", 10); len(found) != 0 {
		t.Fatalf("search still finds deleted messages: %v", found)
	}
	if _, err := s.db.Exec(`INSERT INTO events_fts (events_fts) VALUES ('integrity-check')`); err != nil {
		t.Fatalf("index integrity after retention: %v", err)
	}
	// Counters stay: a room's order continues after its history is gone.
	if last, _ := s.LastSeq("old"); last != 1 {
		t.Fatalf("old room's last seq %d after retention, want 1", last)
	}
	if rooms, _ := s.Rooms(context.Background()); len(rooms) != 1 {
		t.Fatalf("rooms with history: %v, want only go", rooms)
	}
}

// TestFullDiskFailsTheWrite: a write past the size cap fails as on a full
// disk, with an error, and Err reports it.
func TestFullDiskFailsTheWrite(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "chat.db"), func(o *Options) { o.MaxPageCount = 40 })
	big := strings.Repeat("x", 3000)
	var err error
	for i := 0; i < 200 && err == nil; i++ {
		last, _ := s.LastSeq("go")
		err = s.Write([]*hub.Event{msgEvent("go", last+1, big)})
	}
	if err == nil || !strings.Contains(err.Error(), "full") {
		t.Fatalf("writing past the cap: %v, want a full-disk error", err)
	}
	if s.Err() == nil {
		t.Fatal("Err is nil after a failed write")
	}
}
