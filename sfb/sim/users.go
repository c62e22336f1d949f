package sim

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// User is a directory entry of the simulated SfB deployment.
type User struct {
	URI         sfb.URI // sip:alice@contoso.com
	DisplayName string
	// Password is checked for OAuth grant_type=password; the user name is
	// the address.
	Password string
}

// maxCSVErrors bounds the errors one CSV import reports, so that a file
// with the wrong format does not produce 70,000 lines of errors.
const maxCSVErrors = 20

// maxDisplayName is the longest display name accepted from outside.
const maxDisplayName = 256

// csvHeader is the only accepted header line of a users CSV file.
var csvHeader = []string{"uri", "display_name", "password"}

// LoadUsersCSV reads users from CSV with the header line
// "uri,display_name,password". Every problem is reported with its line
// number; nothing is returned unless the whole file is valid.
func LoadUsersCSV(r io.Reader) ([]User, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	cr.Comment = '#'
	header, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return nil, errors.New("users CSV: empty file, want header line \"uri,display_name,password\"")
	}
	if err != nil {
		return nil, fmt.Errorf("users CSV: %w", err)
	}
	if len(header) != len(csvHeader) {
		return nil, fmt.Errorf("users CSV line 1: header has %d columns, want \"uri,display_name,password\"", len(header))
	}
	for i, h := range header {
		h = strings.TrimPrefix(h, "\ufeff") // BOM written by spreadsheet programs
		if !strings.EqualFold(strings.TrimSpace(h), csvHeader[i]) {
			return nil, fmt.Errorf("users CSV line 1: column %d is %q, want %q (header \"uri,display_name,password\")", i+1, h, csvHeader[i])
		}
	}
	var (
		users []User
		errs  []error
		seen  = make(map[sfb.URI]int)
	)
	add := func(line int, format string, args ...any) {
		if len(errs) < maxCSVErrors {
			errs = append(errs, fmt.Errorf("users CSV line %d: %s", line, fmt.Sprintf(format, args...)))
		}
	}
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		line, _ := cr.FieldPos(0)
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				add(pe.Line, "%v", pe.Err)
				if len(rec) == 0 {
					continue
				}
			} else {
				return nil, fmt.Errorf("users CSV: %w", err)
			}
		}
		if len(rec) != len(csvHeader) {
			add(line, "%d columns, want 3 (uri,display_name,password)", len(rec))
			continue
		}
		u, err := validateUser(User{URI: sfb.URI(rec[0]), DisplayName: rec[1], Password: rec[2]})
		if err != nil {
			add(line, "%v", err)
			continue
		}
		if first, dup := seen[u.URI]; dup {
			add(line, "%s already defined on line %d", u.URI, first)
			continue
		}
		seen[u.URI] = line
		users = append(users, u)
	}
	if len(errs) > 0 {
		if len(errs) == maxCSVErrors {
			errs = append(errs, errors.New("users CSV: further errors not shown"))
		}
		return nil, errors.Join(errs...)
	}
	if len(users) == 0 {
		return nil, errors.New("users CSV: no users after the header line")
	}
	return users, nil
}

// validateUser canonicalises the URI and checks the other fields. An empty
// display name becomes the address, as SfB shows it for users without one.
func validateUser(u User) (User, error) {
	uri, err := sfb.ParseURI(string(u.URI))
	if err != nil {
		return User{}, err
	}
	u.URI = uri
	u.DisplayName = strings.TrimSpace(u.DisplayName)
	switch {
	case !utf8.ValidString(u.DisplayName):
		return User{}, fmt.Errorf("display name of %s is not valid UTF-8", uri)
	case len(u.DisplayName) > maxDisplayName:
		return User{}, fmt.Errorf("display name of %s is longer than %d bytes", uri, maxDisplayName)
	case strings.IndexFunc(u.DisplayName, unicode.IsControl) >= 0:
		return User{}, fmt.Errorf("display name of %s contains control characters", uri)
	case u.Password == "":
		return User{}, fmt.Errorf("password of %s is empty", uri)
	}
	if u.DisplayName == "" {
		u.DisplayName = uri.Address()
	}
	return u, nil
}

// user is the server's record of a directory entry. It stays small: the
// mutable state only exists for users that ever signed in or talked.
type user struct {
	uri      sfb.URI
	name     string
	password string
	st       *userState
}

type userState struct {
	apps []*app
	// tokenGen invalidates every token issued before it changed.
	tokenGen uint32
	received []Received
	// rejectMessages makes deliveries to this user fail (fault injection).
	rejectMessages bool
	// nativeSignedOut: the user has no SfB client signed in outside
	// UCWA (a user migrated to Matrix, whose only endpoint was the
	// bridge). An invitation that finds neither an application nor a
	// native client fails, as SfB fails it.
	nativeSignedOut bool
	greeted         bool
	presence        *presenceState
	groups          []ContactGroup
	// sipRegs are the user's SIP endpoints (sipregistrar.go).
	sipRegs []*sipReg
}

func (u *user) state() *userState {
	if u.st == nil {
		u.st = &userState{}
	}
	return u.st
}
