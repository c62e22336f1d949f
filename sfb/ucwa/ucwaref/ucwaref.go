// Package ucwaref extracts the HTTP transcripts from Microsoft's UCWA 2.0
// reference (a directory of Markdown pages) so that the client and the
// simulator can both be held against Microsoft's own samples.
//
// The samples were written by hand and carry typos: HTML entities, blanks
// inside URIs ("sip : x"), elided lines ("." and "..."), stray quotes,
// missing braces, colons, commas and quotes. Each repair the extractor makes
// is counted in Quirks and recorded on the body; a body that is still not
// JSON after repair is listed in Corpus.Failures, never dropped silently.
package ucwaref

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// EnvDir overrides the reference directory.
const EnvDir = "SFB_UCWA_REFERENCE"

// Corpus is everything extracted from a reference directory.
type Corpus struct {
	Dir         string
	Files       int
	Blocks      int
	Transcripts []*Transcript
	Quirks      Quirks
	// Failures lists the bodies that looked like JSON but could not be
	// parsed even after repair.
	Failures []Failure
	// Code lists the blocks that start like a JSON body but are JavaScript
	// object literals (unquoted keys, comments) from the helper-library
	// pages; they are not transcripts.
	Code []Failure
}

// Failure is a body the extractor could not turn into JSON.
type Failure struct {
	File   string
	Line   int
	Reason string
}

func (f Failure) String() string { return fmt.Sprintf("%s:%d: %s", f.File, f.Line, f.Reason) }

// Transcript is one code block that holds a request, a response, or a bare
// body (samples that show only the JSON).
type Transcript struct {
	File string
	// Line is the 1-based line of the code block's first content line.
	Line     int
	Request  *Request
	Response *Response
	// Body is set for blocks that hold only a body (no request or status
	// line, no headers).
	Body *Body
}

// Bodies returns the transcript's bodies that are not nil.
func (t *Transcript) Bodies() []*Body {
	var out []*Body
	if t.Request != nil && t.Request.Body != nil {
		out = append(out, t.Request.Body)
	}
	if t.Response != nil && t.Response.Body != nil {
		out = append(out, t.Response.Body)
	}
	if t.Body != nil {
		out = append(out, t.Body)
	}
	return out
}

// Request is an HTTP request from a sample.
type Request struct {
	Method string
	URL    string
	Header http.Header
	Body   *Body
}

// Response is an HTTP response from a sample. Status is 0 when the sample
// omitted the status line and started with headers.
type Response struct {
	Status int
	Reason string
	Header http.Header
	Body   *Body
}

// Body is a message body. JSON is set (a decoded any: map[string]any,
// []any, ...) when the body is JSON, possibly after repairs listed in
// Repaired; Err says why it is not.
type Body struct {
	// Raw is the body as the sample shows it, after HTML entities were
	// decoded.
	Raw string
	// Text is what was finally parsed (after repairs); empty when the body
	// is not JSON.
	Text string
	JSON any
	// More holds further JSON values when a sample shows several in one
	// block (WebLinks.md).
	More     []any
	Elided   bool
	Repaired []string
	Err      error
}

// IsJSON reports whether the body decoded as JSON.
func (b *Body) IsJSON() bool { return b != nil && b.Err == nil && b.JSON != nil }

// Quirks counts the repairs made over the whole corpus.
type Quirks struct {
	Unfenced          int // JSON sample outside a code fence
	Entities          int // &quot; &amp; &lt; &gt; decoded
	URIBlanks         int // "sip : x", "data : x"
	ElidedLines       int // "." / "..." lines dropped
	ElidedValues      int // {...} / { ... } written for an object
	SplitHeaders      int // a header continued after a blank line ("HttpOnly")
	DanglingCommas    int // ",}" ",]" after elision
	MissingCommas     int // value followed by a key on the next line without a comma
	StrayQuotes       int // "...21a1"' at line end
	MissingBraces     int // "name": "href":...}
	MissingColons     int // "self"{...}
	MissingKeyQuotes  int // type":"added"
	BrokenStrings     int // a string value broken across lines
	MissingStatusLine int // response that starts with headers
	RepeatedStatus    int // "HTTP/1.1 200 OK" twice
	TrailingGarbage   int // text after the JSON value (e.g. "</pre>")
	MultipleValues    int // several JSON values in one block
}

// Map returns the counters by name, for printing.
func (q Quirks) Map() map[string]int {
	return map[string]int{
		"unfenced": q.Unfenced, "entities": q.Entities, "uri_blanks": q.URIBlanks, "elided_lines": q.ElidedLines,
		"elided_values": q.ElidedValues, "split_headers": q.SplitHeaders,
		"dangling_commas": q.DanglingCommas, "missing_commas": q.MissingCommas,
		"stray_quotes": q.StrayQuotes, "missing_braces": q.MissingBraces,
		"missing_colons": q.MissingColons, "missing_key_quotes": q.MissingKeyQuotes,
		"broken_strings": q.BrokenStrings, "missing_status_line": q.MissingStatusLine,
		"repeated_status": q.RepeatedStatus, "trailing_garbage": q.TrailingGarbage, "multiple_values": q.MultipleValues,
	}
}

// DefaultDir finds the reference: $SFB_UCWA_REFERENCE, else
// <module root>/../shared/reference/ucwa.
func DefaultDir() (string, error) {
	if d := os.Getenv(EnvDir); d != "" {
		return d, nil
	}
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, "..", "shared", "reference", "ucwa"), nil
}

func moduleRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("find module root: %w", err)
	}
	for d := wd; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		if filepath.Dir(d) == d {
			break
		}
	}
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err == nil {
		if gomod := strings.TrimSpace(string(out)); gomod != "" && gomod != os.DevNull {
			return filepath.Dir(gomod), nil
		}
	}
	return "", fmt.Errorf("find module root: no go.mod above %s", wd)
}

// Load extracts every transcript from the *.md files in dir.
func Load(dir string) (*Corpus, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.md"))
	if err != nil {
		return nil, fmt.Errorf("list reference %s: %w", dir, err)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("load reference %s: no *.md files", dir)
	}
	sort.Strings(files)
	c := &Corpus{Dir: dir}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("read reference page: %w", err)
		}
		c.Files++
		c.addFile(filepath.Base(f), string(data))
	}
	return c, nil
}

// LoadDefault loads DefaultDir.
func LoadDefault() (*Corpus, error) {
	dir, err := DefaultDir()
	if err != nil {
		return nil, err
	}
	return Load(dir)
}

type block struct {
	line  int
	lines []string
}

var fenceRE = regexp.MustCompile("^(\\s*)```")

// codeBlocks returns the fenced blocks of a Markdown page with the fence's
// indentation removed, and the JSON samples that the page left outside any
// fence (many event samples: a line "{" at the margin up to a line "}").
func codeBlocks(text string) (blocks []block, unfenced int) {
	var out []block
	var cur *block
	var bare *block
	indent := ""
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimRight(sc.Text(), "\r")
		if cur == nil && bare == nil && strings.TrimRight(line, " \t") == "{" {
			bare = &block{line: n, lines: []string{line}}
			continue
		}
		if bare != nil {
			bare.lines = append(bare.lines, line)
			if strings.TrimRight(line, " \t") == "}" {
				out = append(out, *bare)
				unfenced++
				bare = nil
			} else if fenceRE.MatchString(line) || strings.HasPrefix(line, "#") {
				// Not a JSON sample after all.
				bare = nil
			}
			continue
		}
		if m := fenceRE.FindStringSubmatch(line); m != nil {
			if cur == nil {
				cur = &block{line: n + 1}
				indent = m[1]
			} else {
				out = append(out, *cur)
				cur = nil
			}
			continue
		}
		if cur != nil {
			cur.lines = append(cur.lines, strings.TrimPrefix(line, indent))
		}
	}
	if cur != nil {
		out = append(out, *cur)
	}
	return out, unfenced
}

var (
	requestLineRE = regexp.MustCompile(`^(?i)(GET|POST|PUT|DELETE|PATCH|HEAD|OPTIONS)\s+(\S+)(\s+HTTP/\d\.\d)?\s*$`)
	statusLineRE  = regexp.MustCompile(`^HTTP/\d\.\d\s+(\d{3})\s*(.*)$`)
	headerRE      = regexp.MustCompile(`^([A-Za-z][A-Za-z0-9-]*)\s*:\s*(.*)$`)
)

func isElided(line string) bool {
	switch strings.TrimSpace(line) {
	case ".", "..", "...", "…", ". . .":
		return true
	}
	return false
}

func (c *Corpus) addFile(name, text string) {
	blocks, unfenced := codeBlocks(text)
	c.Quirks.Unfenced += unfenced
	for _, b := range blocks {
		c.Blocks++
		if t := c.parseBlock(name, b); t != nil {
			c.Transcripts = append(c.Transcripts, t)
		}
	}
}

func (c *Corpus) decodeEntities(s string) string {
	if !strings.Contains(s, "&") {
		return s
	}
	r := strings.NewReplacer("&quot;", `"`, "&amp;", "&", "&lt;", "<", "&gt;", ">", "&#39;", "'", "&apos;", "'")
	out := r.Replace(s)
	if out != s {
		c.Quirks.Entities++
	}
	return out
}

func (c *Corpus) parseBlock(file string, b block) *Transcript {
	lines := strings.Split(c.decodeEntities(strings.Join(b.lines, "\n")), "\n")
	// Skip leading blank lines.
	start := 0
	for start < len(lines) && strings.TrimSpace(lines[start]) == "" {
		start++
	}
	if start == len(lines) {
		return nil
	}
	t := &Transcript{File: file, Line: b.line + start}
	first := strings.TrimSpace(lines[start])
	rest := lines[start+1:]
	switch {
	case requestLineRE.MatchString(first):
		m := requestLineRE.FindStringSubmatch(first)
		req := &Request{Method: strings.ToUpper(m[1]), URL: m[2]}
		var bodyLines []string
		req.Header, bodyLines = c.parseHeaders(rest)
		req.Body = c.parseBody(file, t.Line, req.Header, bodyLines)
		t.Request = req
	case statusLineRE.MatchString(first):
		m := statusLineRE.FindStringSubmatch(first)
		status, _ := strconv.Atoi(m[1])
		resp := &Response{Status: status, Reason: strings.TrimSpace(m[2])}
		for len(rest) > 0 && statusLineRE.MatchString(strings.TrimSpace(rest[0])) {
			c.Quirks.RepeatedStatus++
			rest = rest[1:]
		}
		var bodyLines []string
		resp.Header, bodyLines = c.parseHeaders(rest)
		resp.Body = c.parseBody(file, t.Line, resp.Header, bodyLines)
		t.Response = resp
	case headerRE.MatchString(first) && looksLikeHeaderBlock(lines[start:]):
		// A response whose status line the sample left out.
		c.Quirks.MissingStatusLine++
		resp := &Response{}
		var bodyLines []string
		resp.Header, bodyLines = c.parseHeaders(lines[start:])
		resp.Body = c.parseBody(file, t.Line, resp.Header, bodyLines)
		t.Response = resp
	case strings.HasPrefix(first, "{") || strings.HasPrefix(first, "["):
		if reason := jsLiteral(lines[start:]); reason != "" {
			c.Code = append(c.Code, Failure{File: file, Line: t.Line, Reason: reason})
			return nil
		}
		t.Body = c.parseBody(file, t.Line, nil, lines[start:])
	default:
		return nil
	}
	return t
}

var unquotedKeyRE = regexp.MustCompile(`^\s*[{,]?\s*[A-Za-z_$][\w$]*\s*:`)

// jsLiteral says why a block that starts with "{" is JavaScript rather than
// a JSON sample, or "" when it is not.
func jsLiteral(lines []string) string {
	for _, l := range lines {
		t := strings.TrimSpace(l)
		if strings.HasPrefix(t, "//") || strings.Contains(t, ", //") {
			return "JavaScript object literal (comments)"
		}
		if unquotedKeyRE.MatchString(t) {
			return "JavaScript object literal (unquoted key)"
		}
	}
	return ""
}

// looksLikeHeaderBlock tells a header-first response ("Content-Length: 1\n\n{")
// from a lone header line quoted in prose, or code.
func looksLikeHeaderBlock(lines []string) bool {
	for _, l := range lines {
		l = strings.TrimSpace(l)
		if l == "" {
			continue
		}
		if !headerRE.MatchString(l) {
			return strings.HasPrefix(l, "{")
		}
		name := strings.ToLower(headerRE.FindStringSubmatch(l)[1])
		if name == "content-type" || name == "content-length" {
			return true
		}
	}
	return false
}

// parseHeaders reads header lines until a blank line or a line that is not a
// header (samples often omit the blank line before the body). Elided lines
// among the headers are dropped.
func (c *Corpus) parseHeaders(lines []string) (http.Header, []string) {
	h := http.Header{}
	i := 0
	for ; i < len(lines); i++ {
		l := strings.TrimSpace(lines[i])
		if l == "" {
			if n := splitHeaderLines(lines[i+1:]); n > 0 {
				// A header value the sample wrapped onto its own line after
				// a blank line (Set-Cookie ... \n\nHttpOnly).
				c.Quirks.SplitHeaders++
				for _, cont := range lines[i+1 : i+1+n] {
					cont = strings.TrimSpace(cont)
					if m := headerRE.FindStringSubmatch(cont); m != nil {
						h.Add(textproto.CanonicalMIMEHeaderKey(m[1]), strings.TrimSpace(m[2]))
					}
				}
				i += n
				continue
			}
			i++
			break
		}
		if isElided(l) {
			c.Quirks.ElidedLines++
			continue
		}
		if statusLineRE.MatchString(l) {
			c.Quirks.RepeatedStatus++
			continue
		}
		m := headerRE.FindStringSubmatch(l)
		if m == nil {
			break
		}
		h.Add(textproto.CanonicalMIMEHeaderKey(m[1]), strings.TrimSpace(m[2]))
	}
	return h, lines[i:]
}

// splitHeaderLines returns how many lines after a blank line still belong to
// the headers: a bare token followed by headers and then a JSON body.
func splitHeaderLines(lines []string) int {
	if len(lines) == 0 {
		return 0
	}
	first := strings.TrimSpace(lines[0])
	if first == "" || strings.ContainsAny(first, " {[<:\"") {
		return 0
	}
	for i := 1; i < len(lines); i++ {
		l := strings.TrimSpace(lines[i])
		if l == "" || strings.HasPrefix(l, "{") {
			return i
		}
		if !headerRE.MatchString(l) {
			return 0
		}
	}
	return 0
}

func (c *Corpus) parseBody(file string, line int, h http.Header, lines []string) *Body {
	raw := strings.TrimSpace(strings.Join(lines, "\n"))
	if raw == "" {
		return nil
	}
	b := &Body{Raw: raw}
	ct := strings.ToLower(h.Get("Content-Type"))
	isJSON := strings.HasPrefix(raw, "{") || strings.HasPrefix(raw, "[") ||
		(strings.Contains(ct, "json") && !strings.HasPrefix(raw, "<"))
	if !isJSON {
		// Form bodies may be preceded by elided lines.
		var kept []string
		for _, l := range lines {
			if isElided(l) {
				c.Quirks.ElidedLines++
				b.Elided = true
				continue
			}
			kept = append(kept, l)
		}
		b.Raw = strings.TrimSpace(strings.Join(kept, "\n"))
		return b
	}
	c.repairJSON(b)
	if b.Err != nil {
		c.Failures = append(c.Failures, Failure{File: file, Line: line, Reason: b.Err.Error()})
	}
	return b
}

var (
	uriBlankRE     = regexp.MustCompile(`"(sip|data|tel|sips)\s+:\s*`)
	strayQuoteRE   = regexp.MustCompile(`"'(\s*)$`)
	missingBraceRE = regexp.MustCompile(`("[A-Za-z_][\w]*"\s*:\s*)("href"\s*:)`)
	missingColonRE = regexp.MustCompile(`("[A-Za-z_][\w]*")(\s*)\{`)
	missingKeyQRE  = regexp.MustCompile(`^(\s*)([A-Za-z_]\w*)"(\s*:)`)
	elidedValueRE  = regexp.MustCompile(`\{\s*(\.\.\.|…)\s*\}`)
	danglingRE     = regexp.MustCompile(`,(\s*)([}\]])`)
)

// repairJSON parses b.Raw as JSON, applying the repairs the samples need.
func (c *Corpus) repairJSON(b *Body) {
	text := b.Raw
	var q Quirks
	// Always-safe normalisations first.
	if uriBlankRE.MatchString(text) {
		n := len(uriBlankRE.FindAllStringIndex(text, -1))
		text = uriBlankRE.ReplaceAllString(text, `"$1:`)
		q.URIBlanks += n
		b.Repaired = append(b.Repaired, "uri blanks")
	}
	if elidedValueRE.MatchString(text) {
		q.ElidedValues += len(elidedValueRE.FindAllStringIndex(text, -1))
		text = elidedValueRE.ReplaceAllString(text, "{}")
		b.Elided = true
		b.Repaired = append(b.Repaired, "elided values")
	}
	var kept []string
	for _, l := range strings.Split(text, "\n") {
		if isElided(l) {
			q.ElidedLines++
			b.Elided = true
			continue
		}
		kept = append(kept, l)
	}
	if b.Elided {
		b.Repaired = append(b.Repaired, "elided lines")
	}
	text = strings.Join(kept, "\n")

	v, err := decodeOne(text)
	if err != nil {
		type repair struct {
			name  string
			apply func(string) (string, int)
			count *int
		}
		repairs := []repair{
			{"broken strings", joinBrokenStrings, &q.BrokenStrings},
			{"stray quotes", func(s string) (string, int) { return replaceLines(s, strayQuoteRE, `",$1`) }, &q.StrayQuotes},
			{"missing braces", func(s string) (string, int) { return replaceAll(s, missingBraceRE, `$1{$2`) }, &q.MissingBraces},
			{"missing colons", func(s string) (string, int) { return replaceOutsideStrings(s, missingColonRE, `$1:$2{`) }, &q.MissingColons},
			{"missing key quotes", func(s string) (string, int) { return replaceLines(s, missingKeyQRE, `$1"$2"$3`) }, &q.MissingKeyQuotes},
			{"missing commas", insertMissingCommas, &q.MissingCommas},
			{"dangling commas", func(s string) (string, int) { return replaceOutsideStrings(s, danglingRE, `$1$2`) }, &q.DanglingCommas},
		}
		for _, r := range repairs {
			fixed, n := r.apply(text)
			if n == 0 {
				continue
			}
			text = fixed
			*r.count += n
			b.Repaired = append(b.Repaired, r.name)
			if v, err = decodeOne(text); err == nil {
				break
			}
		}
	}
	if err != nil {
		var tg *trailingError
		if errors.As(err, &tg) {
			if more, merr := decodeAll(tg.rest); merr == nil {
				q.MultipleValues++
				b.More = more
				v, err = tg.v, nil
			} else if !strings.ContainsAny(tg.rest[:1], `"{[,:`) {
				// The value is complete; the sample has markup after it
				// ("</pre>").
				q.TrailingGarbage++
				b.Repaired = append(b.Repaired, "trailing text")
				v, err = tg.v, nil
				text = tg.prefix
			}
			// Otherwise the value closed too early (an elided opening
			// brace): taking the prefix would lose fields, so it fails.
		}
	}
	if err != nil {
		b.Err = fmt.Errorf("not JSON after repairs %v: %w", b.Repaired, err)
		return
	}
	b.JSON = v
	b.Text = text
	c.Quirks.add(q)
}

func (q *Quirks) add(o Quirks) {
	q.URIBlanks += o.URIBlanks
	q.ElidedLines += o.ElidedLines
	q.ElidedValues += o.ElidedValues
	q.DanglingCommas += o.DanglingCommas
	q.MissingCommas += o.MissingCommas
	q.StrayQuotes += o.StrayQuotes
	q.MissingBraces += o.MissingBraces
	q.MissingColons += o.MissingColons
	q.MissingKeyQuotes += o.MissingKeyQuotes
	q.BrokenStrings += o.BrokenStrings
	q.TrailingGarbage += o.TrailingGarbage
	q.MultipleValues += o.MultipleValues
}

type trailingError struct {
	v      any
	prefix string
	rest   string
}

func (e *trailingError) Error() string {
	r := e.rest
	if len(r) > 40 {
		r = r[:40] + "..."
	}
	return fmt.Sprintf("text after JSON value: %q", r)
}

func decodeAll(s string) ([]any, error) {
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var out []any
	for dec.More() {
		var v any
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

func decodeOne(s string) (any, error) {
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, withLine(s, err)
	}
	off := dec.InputOffset()
	if rest := strings.TrimSpace(s[off:]); rest != "" {
		return nil, &trailingError{v: v, prefix: s[:off], rest: rest}
	}
	return v, nil
}

// withLine adds the line number to a syntax error so failures can be found.
func withLine(s string, err error) error {
	var se *json.SyntaxError
	if errors.As(err, &se) && se.Offset > 0 && int(se.Offset) <= len(s) {
		line := strings.Count(s[:se.Offset], "\n") + 1
		return fmt.Errorf("line %d of body: %w", line, err)
	}
	return err
}

func replaceAll(s string, re *regexp.Regexp, repl string) (string, int) {
	n := len(re.FindAllStringIndex(s, -1))
	if n == 0 {
		return s, 0
	}
	return re.ReplaceAllString(s, repl), n
}

func replaceLines(s string, re *regexp.Regexp, repl string) (string, int) {
	lines := strings.Split(s, "\n")
	n := 0
	for i, l := range lines {
		if re.MatchString(l) {
			lines[i] = re.ReplaceAllString(l, repl)
			n++
		}
	}
	return strings.Join(lines, "\n"), n
}

// replaceOutsideStrings applies re only to the parts of s that are not
// inside JSON string literals.
func replaceOutsideStrings(s string, re *regexp.Regexp, repl string) (string, int) {
	// Mask string contents so the regexp cannot match inside them, keeping
	// quotes and offsets.
	mask := []byte(s)
	in, esc := false, false
	for i := 0; i < len(mask); i++ {
		ch := mask[i]
		switch {
		case esc:
			esc = false
			mask[i] = 'x'
		case in && ch == '\\':
			esc = true
			mask[i] = 'x'
		case ch == '"':
			in = !in
		case in && ch != '\n':
			mask[i] = 'x'
		}
	}
	locs := re.FindAllSubmatchIndex(mask, -1)
	if len(locs) == 0 {
		return s, 0
	}
	var out strings.Builder
	last := 0
	for _, loc := range locs {
		out.WriteString(s[last:loc[0]])
		out.Write(re.Expand(nil, []byte(repl), []byte(s), loc))
		last = loc[1]
	}
	out.WriteString(s[last:])
	return out.String(), len(locs)
}

// joinBrokenStrings joins a line that ends inside a string literal with the
// next one ("data:text/plain;base64,\n    abc").
func joinBrokenStrings(s string) (string, int) {
	lines := strings.Split(s, "\n")
	var out []string
	n := 0
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		for openString(l) && i+1 < len(lines) && !strings.HasSuffix(strings.TrimSpace(l), "'") {
			i++
			l += strings.TrimSpace(lines[i])
			n++
		}
		out = append(out, l)
	}
	return strings.Join(out, "\n"), n
}

func openString(l string) bool {
	in, esc := false, false
	for i := 0; i < len(l); i++ {
		switch {
		case esc:
			esc = false
		case in && l[i] == '\\':
			esc = true
		case l[i] == '"':
			in = !in
		}
	}
	return in
}

var valueEndRE = regexp.MustCompile(`("|\}|\]|\d|true|false|null)\s*$`)

// insertMissingCommas adds a comma where a line ends a value and the next
// non-blank line starts a key or an element.
func insertMissingCommas(s string) (string, int) {
	lines := strings.Split(s, "\n")
	n := 0
	for i := 0; i < len(lines)-1; i++ {
		if !valueEndRE.MatchString(lines[i]) || openString(lines[i]) {
			continue
		}
		j := i + 1
		for j < len(lines) && strings.TrimSpace(lines[j]) == "" {
			j++
		}
		if j == len(lines) {
			break
		}
		next := strings.TrimSpace(lines[j])
		if strings.HasPrefix(next, `"`) || strings.HasPrefix(next, "{") {
			lines[i] = strings.TrimRight(lines[i], " \t") + ","
			n++
		}
	}
	return strings.Join(lines, "\n"), n
}
