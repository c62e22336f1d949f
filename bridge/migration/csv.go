package migration

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode"
	"unicode/utf8"

	"maunium.net/go/mautrix/id"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// Limits of an import file: the whole organisation (70,000 seats) fits
// with room to spare.
const (
	MaxImportBytes = 32 << 20
	MaxImportRows  = 200_000
	// MaxWaveName is the longest wave name, in characters.
	MaxWaveName = 100
)

// Row is one valid data row of an import file.
type Row struct {
	Line       int // 1-based line of the file, the header being line 1
	Address    string
	MatrixUser id.UserID
	Wave       string // "" for none
	Mode       Mode   // "" for none
}

// RowError is why one line of an import file cannot be used.
type RowError struct {
	Line   int    `json:"line"`
	Reason string `json:"reason"`
}

func (e RowError) Error() string { return fmt.Sprintf("line %d: %s", e.Line, e.Reason) }

// Parsed is an import file read and checked on its own (without the
// database): its valid rows and the reasons of every bad one.
type Parsed struct {
	Rows   []Row
	Errors []RowError
}

// Columns of an import file, by the names a header may give them (compared
// without case, blanks, "_" and "-"; German names too, since the lists
// come from German offices).
const (
	colAddress = "sip_address"
	colMatrix  = "matrix_id"
	colWave    = "wave"
	colMode    = "mode"
)

var columnNames = map[string]string{
	"sipaddress": colAddress, "sip": colAddress, "sipuri": colAddress, "address": colAddress,
	"sipadresse": colAddress, "adresse": colAddress, "signinaddress": colAddress, "anmeldeadresse": colAddress,
	"matrixid": colMatrix, "matrix": colMatrix, "mxid": colMatrix, "matrixuser": colMatrix,
	"matrixuserid": colMatrix, "matrixkennung": colMatrix, "matrixkonto": colMatrix,
	"wave": colWave, "welle": colWave,
	"mode": colMode, "modus": colMode,
}

// ExampleHeader is the header the documentation and error messages show.
const ExampleHeader = "sip_address;matrix_id;wave;mode"

// ParseCSV reads an import file: a header row naming the columns
// (sip_address, matrix_id, wave, optional mode, in any order), then one
// person per row. It takes what spreadsheet programs write: "," or ";" or
// tab as separator (a German Excel writes ";"; a first line "sep=;" names
// it), a UTF-8 byte order mark,
// CRLF line ends, quoted fields, blank rows. An error means the file as a
// whole cannot be read (no header, not UTF-8, too large); a bad row is
// reported in Parsed.Errors with its line and the other rows are still
// checked.
func ParseCSV(data []byte) (*Parsed, error) {
	if len(data) > MaxImportBytes {
		return nil, fmt.Errorf("the file has %d bytes, more than the %d an import takes: split it", len(data), MaxImportBytes)
	}
	data = bytes.TrimPrefix(data, []byte("\uFEFF"))
	if !utf8.Valid(data) {
		line := 1 + bytes.Count(data[:invalidUTF8At(data)], []byte("\n"))
		return nil, fmt.Errorf("line %d is not UTF-8 text: save the file as \"CSV UTF-8\" (in Excel: Save As, \"CSV UTF-8 (durch Trennzeichen getrennt)\")", line)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, fmt.Errorf("the file is empty: it needs a header row (%s) and a row per person", ExampleHeader)
	}
	comma := separator(data)
	// Excel writes and honours a first line "sep=;" naming the separator.
	if first, rest, ok := bytes.Cut(data, []byte("\n")); ok {
		if hint := bytes.TrimSpace(first); len(hint) == 5 && bytes.HasPrefix(hint, []byte("sep=")) && strings.ContainsRune(",;\t|", rune(hint[4])) {
			comma = rune(hint[4])
			// An empty line instead keeps the line numbers.
			data = append([]byte("\n"), rest...)
		}
	}
	r := csv.NewReader(bytes.NewReader(data))
	r.Comma = comma
	r.FieldsPerRecord = -1
	r.TrimLeadingSpace = true
	r.ReuseRecord = false

	header, err := r.Read()
	if err != nil {
		return nil, fmt.Errorf("cannot read the header row: %w", unwrapCSV(err))
	}
	headerLine, _ := r.FieldPos(0)
	cols, err := headerColumns(header)
	if err != nil {
		return nil, fmt.Errorf("line %d: %w", headerLine, err)
	}

	p := &Parsed{}
	seenAddress := map[string]int{}
	seenMatrix := map[id.UserID]int{}
	for {
		record, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if len(p.Rows)+len(p.Errors) >= MaxImportRows {
			return nil, fmt.Errorf("the file has more than %d rows: split it", MaxImportRows)
		}
		var parseErr *csv.ParseError
		if errors.As(err, &parseErr) {
			p.Errors = append(p.Errors, RowError{Line: parseErr.StartLine, Reason: unwrapCSV(err).Error()})
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read the file: %w", err)
		}
		line, _ := r.FieldPos(0)
		row, reason := parseRow(record, cols)
		if reason == "" && row == nil {
			continue // a blank row
		}
		if reason == "" {
			if first, dup := seenAddress[row.Address]; dup {
				reason = fmt.Sprintf("%s is already on line %d; a person can be in one row only", row.Address, first)
			} else if first, dup := seenMatrix[row.MatrixUser]; dup {
				reason = fmt.Sprintf("Matrix ID %s is already on line %d; each person needs their own Matrix ID", row.MatrixUser, first)
			}
		}
		if reason != "" {
			p.Errors = append(p.Errors, RowError{Line: line, Reason: reason})
			continue
		}
		row.Line = line
		seenAddress[row.Address] = line
		seenMatrix[row.MatrixUser] = line
		p.Rows = append(p.Rows, *row)
	}
	if len(p.Rows) == 0 && len(p.Errors) == 0 {
		return nil, fmt.Errorf("the file has a header but no rows: add a row per person below it")
	}
	return p, nil
}

// separator guesses the separator from the header line: the one of ";",
// "," and tab it contains most often.
func separator(data []byte) rune {
	first, _, _ := bytes.Cut(data, []byte("\n"))
	best, count := ',', bytes.Count(first, []byte(","))
	for _, sep := range []rune{';', '\t'} {
		if n := bytes.Count(first, []byte(string(sep))); n > count {
			best, count = sep, n
		}
	}
	return best
}

func headerColumns(header []string) (map[string]int, error) {
	cols := map[string]int{}
	for i, name := range header {
		key := strings.Map(func(r rune) rune {
			if unicode.IsSpace(r) || r == '_' || r == '-' {
				return -1
			}
			return unicode.ToLower(r)
		}, name)
		if key == "" {
			continue // Excel adds empty columns after the last one
		}
		col, ok := columnNames[key]
		if !ok {
			if strings.Contains(name, "@") {
				return nil, fmt.Errorf("this is not a header row: the first row must name the columns, e.g. %s", ExampleHeader)
			}
			return nil, fmt.Errorf("unknown column %q: the columns are sip_address, matrix_id, wave and (optional) mode", name)
		}
		if _, dup := cols[col]; dup {
			return nil, fmt.Errorf("column %s appears twice", col)
		}
		cols[col] = i
	}
	var missing []string
	for _, col := range []string{colAddress, colMatrix, colWave} {
		if _, ok := cols[col]; !ok {
			missing = append(missing, col)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("the header has no column %s; it needs sip_address, matrix_id, wave and may have mode, e.g. %s",
			strings.Join(missing, ", "), ExampleHeader)
	}
	return cols, nil
}

// parseRow checks one record; a blank record gives neither row nor reason.
func parseRow(record []string, cols map[string]int) (*Row, string) {
	field := func(col string) string {
		i, ok := cols[col]
		if !ok || i >= len(record) {
			return ""
		}
		return strings.TrimSpace(record[i])
	}
	blank := true
	for _, f := range record {
		if strings.TrimSpace(f) != "" {
			blank = false
			break
		}
	}
	if blank {
		return nil, ""
	}
	for i, f := range record {
		if !inHeader(cols, i) && strings.TrimSpace(f) != "" {
			return nil, fmt.Sprintf("value %q in column %d, which the header does not name", f, i+1)
		}
	}

	var row Row
	rawAddress := field(colAddress)
	if rawAddress == "" {
		return nil, "no SIP address"
	}
	uri, err := sfb.ParseURI(rawAddress)
	if err != nil {
		return nil, fmt.Sprintf("SIP address %q is not valid: write it as name@domain or sip:name@domain", rawAddress)
	}
	row.Address = uri.Address()

	rawMatrix := field(colMatrix)
	if rawMatrix == "" {
		return nil, fmt.Sprintf("no Matrix ID for %s", row.Address)
	}
	row.MatrixUser = id.UserID(rawMatrix)
	if _, _, err := row.MatrixUser.ParseAndValidateStrict(); err != nil {
		return nil, fmt.Sprintf("Matrix ID %q is not valid: write it as @name:server, in lower case", rawMatrix)
	}

	row.Wave = field(colWave)
	if reason := checkWaveName(row.Wave); row.Wave != "" && reason != "" {
		return nil, reason
	}
	if raw := field(colMode); raw != "" {
		if row.Mode, err = ParseMode(raw); err != nil {
			return nil, err.Error()
		}
	}
	return &row, ""
}

func inHeader(cols map[string]int, i int) bool {
	for _, c := range cols {
		if c == i {
			return true
		}
	}
	return false
}

// checkWaveName returns why name cannot name a wave, or "".
func checkWaveName(name string) string {
	switch {
	case strings.TrimSpace(name) == "":
		return "the wave name is empty"
	case strings.TrimSpace(name) != name:
		return fmt.Sprintf("wave name %q starts or ends with blanks", name)
	case utf8.RuneCountInString(name) > MaxWaveName:
		return fmt.Sprintf("wave name %q is longer than %d characters", name, MaxWaveName)
	case strings.ContainsFunc(name, func(r rune) bool { return unicode.IsControl(r) || r == '/' }):
		return fmt.Sprintf("wave name %q contains a control character or \"/\"", name)
	}
	return ""
}

func invalidUTF8At(data []byte) int {
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		if r == utf8.RuneError && size == 1 {
			return i
		}
		i += size
	}
	return len(data)
}

// unwrapCSV keeps encoding/csv's reason without its own line prefix,
// which the caller reports in its words.
func unwrapCSV(err error) error {
	var parseErr *csv.ParseError
	if errors.As(err, &parseErr) {
		if errors.Is(parseErr.Err, csv.ErrBareQuote) || errors.Is(parseErr.Err, csv.ErrQuote) {
			return fmt.Errorf("a quote character (\") is misplaced: %w", parseErr.Err)
		}
		return parseErr.Err
	}
	return err
}
