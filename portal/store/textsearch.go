package store

import (
	"strings"
	"unicode"

	"golang.org/x/text/unicode/norm"
)

// PostgreSQL's full-text search of recordings. SQLite's FTS4 (unicode61
// tokenizer) splits text into runs of letters and digits, lower-cased,
// without diacritics on Latin letters; the
// store splits the same way in Go and hands PostgreSQL only those words,
// one space apart, so its parser finds the same tokens on both sides of a
// search and a search finds what it finds on SQLite.

// tsMaxPositions is the last word position a tsvector keeps (PostgreSQL
// clamps larger ones): words past it still match alone, but not as a
// side-by-side pair ("deploy-42").
const tsMaxPositions = 16383

// tsMaxWords bounds the words handed to to_tsvector (a tsvector is at most
// 1 MiB): past tsMaxPositions words only words not seen yet are added,
// until this many bytes.
const tsMaxWords = 768 << 10

// splitWords calls fn with each word of text: a run of letters and digits,
// folded (foldWord). fn returns false to stop.
func splitWords(text string, fn func(w string) bool) {
	start := -1
	for i, r := range text {
		inWord := unicode.IsLetter(r) || unicode.IsNumber(r)
		switch {
		case inWord && start < 0:
			start = i
		case !inWord && start >= 0:
			if !fn(foldWord(text[start:i])) {
				return
			}
			start = -1
		}
	}
	if start >= 0 {
		fn(foldWord(text[start:]))
	}
}

// searchWords returns text's words for to_tsvector('simple', ...): all in
// order up to tsMaxPositions, then each new one once, at most tsMaxWords
// bytes.
func searchWords(text string) string {
	var b strings.Builder
	seen := map[string]bool{}
	n := 0
	splitWords(text, func(w string) bool {
		n++
		if n > tsMaxPositions && seen[w] {
			return true
		}
		if b.Len()+len(w)+1 > tsMaxWords {
			return false
		}
		seen[w] = true
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(w)
		return true
	})
	return b.String()
}

// tsQuery is MatchQuery for PostgreSQL: each typed word is a phrase of its
// letter-and-digit runs side by side (<->), a trailing * a prefix search
// on the last, and all words must be found (&). Words are only letters and
// digits, so none is read as an operator.
func tsQuery(text string) string {
	var terms []string
	for _, field := range strings.Fields(text) {
		var words []string
		splitWords(field, func(w string) bool { words = append(words, "'"+w+"'"); return true })
		if len(words) == 0 {
			continue
		}
		if strings.HasSuffix(field, "*") {
			words[len(words)-1] += ":*"
		}
		terms = append(terms, "("+strings.Join(words, " <-> ")+")")
	}
	return strings.Join(terms, " & ")
}

// foldWord lower-cases w and takes the diacritics off Latin letters ("DÉJÀ"
// is "deja"), as FTS4's unicode61 tokenizer does.
func foldWord(w string) string {
	w = strings.ToLower(w)
	ascii := true
	for i := 0; i < len(w); i++ {
		if w[i] >= 0x80 {
			ascii = false
			break
		}
	}
	if ascii {
		return w
	}
	var b strings.Builder
	var base rune
	for _, r := range norm.NFD.String(w) {
		if unicode.Is(unicode.Mn, r) && unicode.Is(unicode.Latin, base) {
			continue
		}
		base = r
		b.WriteRune(r)
	}
	return norm.NFC.String(b.String())
}
