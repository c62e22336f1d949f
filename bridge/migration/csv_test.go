package migration

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix/id"
)

// What a German Excel writes for "CSV UTF-8 (durch Trennzeichen getrennt)":
// a byte order mark, ";" between fields, CRLF, German column names, and
// an empty row of separators where the sheet had one.
const germanExcel = "\uFEFFSIP-Adresse;Matrix-Kennung;Welle;Modus\r\n" +
	"Jürgen.Müller@Contoso.com;@juergen.mueller:example.org;Welle 1 – Süd;\r\n" +
	"sip:erika@contoso.com;@erika:example.org;\"Welle 1 – Süd\";Koexistenz\r\n" +
	";;;\r\n" +
	"max@contoso.com;@max:example.org;;matrix_only\r\n"

func TestParseCSVGermanExcelExport(t *testing.T) {
	p, err := ParseCSV([]byte(germanExcel))
	require.NoError(t, err)
	require.Len(t, p.Errors, 1)
	assert.Equal(t, 3, p.Errors[0].Line)
	assert.Contains(t, p.Errors[0].Reason, `unknown mode "Koexistenz"`)
	require.Len(t, p.Rows, 2)
	assert.Equal(t, Row{Line: 2, Address: "jürgen.müller@contoso.com", MatrixUser: "@juergen.mueller:example.org", Wave: "Welle 1 – Süd"}, p.Rows[0])
	assert.Equal(t, Row{Line: 5, Address: "max@contoso.com", MatrixUser: "@max:example.org", Mode: MatrixOnly}, p.Rows[1])
}

func TestParseCSVCommaTabAndColumnOrder(t *testing.T) {
	for name, data := range map[string]string{
		"comma": "wave,matrix_id,sip_address\nW1,@a:example.org,a@contoso.com\n",
		"tab":   "Matrix ID\tWave\tSIP address\n@a:example.org\tW1\ta@contoso.com\n",
		// Excel's separator line, which is no header.
		"sep line": "sep=;\r\n\"wave\";\"matrix_id\";\"sip_address\"\r\nW1;@a:example.org;a@contoso.com\r\n",
	} {
		p, err := ParseCSV([]byte(data))
		require.NoError(t, err, name)
		assert.Empty(t, p.Errors, name)
		line := 2
		if name == "sep line" {
			line = 3
		}
		assert.Equal(t, []Row{{Line: line, Address: "a@contoso.com", MatrixUser: id.UserID("@a:example.org"), Wave: "W1"}}, p.Rows, name)
	}
}

// Every bad row is reported with the line it is on (a quoted field with a
// line break makes record and line numbers differ), and the good rows are
// still read.
func TestParseCSVReportsEveryBadRowWithItsLine(t *testing.T) {
	data := strings.Join([]string{
		"sip_address;matrix_id;wave;mode",                   // 1
		"a@contoso.com;@a:example.org;\"Wave\nOne\";",       // 2-3: the wave name has a line break
		"not-an-address;@b:example.org;W1;",                 // 4
		"c@contoso.com;alice;W1;",                           // 5
		"d@contoso.com;;W1;",                                // 6
		"A@Contoso.com;@a2:example.org;W1;",                 // 7: same address as line 2
		"e@contoso.com;@a2:example.org;W1;",                 // 8: same Matrix ID as line 7
		"f@contoso.com;@f:example.org;W1;teams_only",        // 9
		"g@contoso.com;@g:example.org;W1;coexistence;extra", // 10
		"h@contoso.com;@H:example.org;W1;",                  // 11: upper case
		"i@contoso.com;@i:example.org;W1;Matrix-Only",       // 12: fine
		"j@contoso.com;@j:example.org;W/1;",                 // 13
	}, "\r\n")
	p, err := ParseCSV([]byte(data))
	require.NoError(t, err)
	lines := map[int]string{}
	for _, e := range p.Errors {
		lines[e.Line] = e.Reason
	}
	assert.Contains(t, lines[2], "control character", "the wave name's line break")
	assert.Contains(t, lines[4], `SIP address "not-an-address" is not valid`)
	assert.Contains(t, lines[5], `Matrix ID "alice" is not valid`)
	assert.Contains(t, lines[6], "no Matrix ID for d@contoso.com")
	assert.Contains(t, lines[8], "already on line")
	assert.Contains(t, lines[9], "unknown mode")
	assert.Contains(t, lines[10], "column 5")
	assert.Contains(t, lines[11], "lower case")
	assert.Contains(t, lines[13], "W/1")
	// Line 7 duplicates the bad line 2, which is not taken: it is kept.
	assert.Len(t, p.Errors, 9)
	require.Len(t, p.Rows, 2)
	assert.Equal(t, Row{Line: 7, Address: "a@contoso.com", MatrixUser: "@a2:example.org", Wave: "W1"}, p.Rows[0])
	assert.Equal(t, Row{Line: 12, Address: "i@contoso.com", MatrixUser: "@i:example.org", Wave: "W1", Mode: MatrixOnly}, p.Rows[1])
}

func TestParseCSVRefusesFilesItCannotRead(t *testing.T) {
	for name, tc := range map[string]struct {
		data string
		want string
	}{
		"empty":          {"\uFEFF\r\n", "empty"},
		"no header":      {"a@contoso.com;@a:example.org;W1\r\n", "line 1: this is not a header"},
		"unknown column": {"sip_address;matrix_id;wave;department\r\n", `unknown column "department"`},
		"missing column": {"sip_address;wave\r\n", "no column matrix_id"},
		"header only":    {"sip_address;matrix_id;wave\r\n", "no rows"},
		"Windows-1252":   {"sip_address;matrix_id;wave\r\nj\xfcrgen@contoso.com;@j:example.org;W1\r\n", "line 2 is not UTF-8"},
	} {
		_, err := ParseCSV([]byte(tc.data))
		require.Error(t, err, name)
		assert.Contains(t, err.Error(), tc.want, name)
	}
}

func FuzzParseCSV(f *testing.F) {
	f.Add([]byte(germanExcel))
	f.Add([]byte("sip_address,matrix_id,wave\na@b.c,@a:b.c,W\n"))
	f.Add([]byte("sip_address;matrix_id;wave;mode\n\"a;\"\"\";@x:y;\"\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ParseCSV(data)
		if err != nil {
			return
		}
		seen := map[string]bool{}
		for _, row := range p.Rows {
			if row.Line < 2 || row.Address == "" || row.MatrixUser == "" {
				t.Fatalf("bad row accepted: %+v", row)
			}
			if _, _, err := row.MatrixUser.ParseAndValidateStrict(); err != nil {
				t.Fatalf("invalid Matrix ID accepted: %q", row.MatrixUser)
			}
			if seen[row.Address] {
				t.Fatalf("address %q accepted twice", row.Address)
			}
			seen[row.Address] = true
			if row.Wave != "" && checkWaveName(row.Wave) != "" {
				t.Fatalf("bad wave name accepted: %q", row.Wave)
			}
		}
		for _, e := range p.Errors {
			if e.Line < 2 || e.Reason == "" {
				t.Fatalf("error without line or reason: %+v", e)
			}
		}
	})
}
