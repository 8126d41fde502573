package hub

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/mtibben/confusables"
	"golang.org/x/text/unicode/norm"
)

// Names are what members recognise each other and their rooms by, so two
// names that look the same must be the same name. Every nickname and room
// name is normalised (Unicode NFKC: fullwidth "ｂｏｂ" is "bob", a decomposed
// "josé" is the composed one), may hold no invisible or blank characters
// (controls, format characters, Hangul fillers, the blank Braille pattern,
// variation selectors, spaces other than U+0020), and is compared under its
// confusable skeleton (Unicode TR39, case-folded): Cyrillic "аlice" is
// taken while "alice" is, "Ѕystem" is as reserved as "System", and a room
// "lоbby" with a Cyrillic о cannot be created beside "lobby".

// CleanNickname normalises nickname and checks the rules: valid UTF-8, 1 to
// MaxNicknameRunes characters after NFKC and trimming, nothing invisible,
// not starting with a combining mark.
func CleanNickname(nickname string) (string, error) {
	if !utf8.ValidString(nickname) {
		return "", fmt.Errorf("%w: not UTF-8", ErrNicknameInvalid)
	}
	nick := strings.TrimSpace(norm.NFKC.String(nickname))
	switch n := utf8.RuneCountInString(nick); {
	case n == 0:
		return "", fmt.Errorf("%w: empty", ErrNicknameInvalid)
	case n > MaxNicknameRunes:
		return "", fmt.Errorf("%w: longer than %d characters", ErrNicknameInvalid, MaxNicknameRunes)
	}
	if r, _ := utf8.DecodeRuneInString(nick); unicode.Is(unicode.M, r) {
		return "", fmt.Errorf("%w: starts with a combining mark %U", ErrNicknameInvalid, r)
	}
	for _, r := range nick {
		if unicode.IsControl(r) {
			return "", fmt.Errorf("%w: control character %U", ErrNicknameInvalid, r)
		}
		if invisible(r) {
			return "", fmt.Errorf("%w: invisible character %U", ErrNicknameInvalid, r)
		}
	}
	return nick, nil
}

// CleanRoom normalises a room name: NFKC, a leading '#' dropped, letters
// lower-cased. A name is 1 to MaxRoomRunes letters, digits, '-', '_' or
// '.', starting with a letter or digit.
func CleanRoom(name string) (string, error) {
	if !utf8.ValidString(name) {
		return "", fmt.Errorf("%w: not UTF-8", ErrRoomInvalid)
	}
	name = strings.ToLower(strings.TrimPrefix(strings.TrimSpace(norm.NFKC.String(name)), "#"))
	n := utf8.RuneCountInString(name)
	if n == 0 || n > MaxRoomRunes {
		return "", fmt.Errorf("%w: 1 to %d characters", ErrRoomInvalid, MaxRoomRunes)
	}
	for i, r := range name {
		ok := (unicode.IsLetter(r) || unicode.IsDigit(r) || (i > 0 && (r == '-' || r == '_' || r == '.'))) && !invisible(r)
		if !ok {
			return "", fmt.Errorf("%w: letters, digits, '-', '_' and '.' only, starting with a letter or digit", ErrRoomInvalid)
		}
	}
	return name, nil
}

// nicknameKey is the key under which nicknames are unique: the confusable
// skeleton, case-folded before and after (so "B0B" and "bob" share one).
func nicknameKey(nick string) string { return lookalikeKey(nick) }

// roomKey is the key under which room names are distinct.
func roomKey(name string) string { return lookalikeKey(name) }

func lookalikeKey(s string) string {
	return fold(confusables.Skeleton(fold(s)))
}

// fold is case-insensitive comparison's form of s.
func fold(s string) string { return strings.ToLower(strings.ToUpper(s)) }

// invisible reports characters that show as nothing (or as a blank) and so
// could make a name look like another or like no name at all.
func invisible(r rune) bool {
	switch {
	case unicode.IsControl(r), unicode.Is(unicode.Cf, r), isBidiControl(r):
		return true
	case r != ' ' && (unicode.IsSpace(r) || unicode.Is(unicode.Zs, r)):
		return true
	case r == 0x115F, r == 0x1160, r == 0x3164, r == 0xFFA0: // Hangul fillers
		return true
	case r == 0x2800: // Braille pattern blank
		return true
	case r == 0x034F, r == 0x17B4, r == 0x17B5, // combining grapheme joiner, Khmer inherent vowels
		r >= 0x180B && r <= 0x180F,                               // Mongolian variation selectors
		r >= 0xFE00 && r <= 0xFE0F, r >= 0xE0100 && r <= 0xE01EF, // variation selectors
		r >= 0x1BCA0 && r <= 0x1BCA3: // shorthand format controls
		return true
	}
	return false
}
