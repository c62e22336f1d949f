package matrixapp

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/rs/zerolog"
	"go.mau.fi/util/dbutil"
)

// sqliteFileMode is the SQLite database's mode: it holds sealed credentials,
// message IDs and who talks to whom, readable by the bridge's user only,
// like the configuration and the log.
const sqliteFileMode fs.FileMode = 0o600

// sqliteFile is what protectSQLiteFile did, for the log once there is one.
type sqliteFile struct {
	path string
	// tightened is the mode an existing file had before it was made 0600;
	// zero when nothing had to change.
	tightened fs.FileMode
	err       error
}

// protectSQLiteFile creates a SQLite database file that does not exist yet
// with mode 0600 before SQLite opens it (SQLite creates files 0644 under a
// usual umask and gives its -wal and -shm files the mode of the database),
// and takes group and other permissions away from one that exists. Other
// databases are left alone.
func protectSQLiteFile(cfg dbutil.Config) sqliteFile {
	if !strings.HasPrefix(cfg.Type, "sqlite3") && cfg.Type != "litestream" {
		return sqliteFile{}
	}
	path := sqlitePath(cfg.URI)
	if path == "" {
		return sqliteFile{}
	}
	res := sqliteFile{path: path}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, sqliteFileMode)
	if err == nil {
		res.err = f.Close()
		return res
	}
	if !errors.Is(err, fs.ErrExist) {
		res.err = fmt.Errorf("create %s: %w", path, err)
		return res
	}
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		info, err := os.Stat(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		} else if err != nil {
			res.err = err
			return res
		}
		if info.Mode().Perm()&^sqliteFileMode == 0 {
			continue
		}
		if err := os.Chmod(p, sqliteFileMode); err != nil {
			res.err = fmt.Errorf("make %s readable by its owner only: %w", p, err)
			return res
		}
		if p == path {
			res.tightened = info.Mode().Perm()
		}
	}
	return res
}

func (f sqliteFile) log(log *zerolog.Logger) {
	switch {
	case f.err != nil:
		log.Warn().Err(f.err).Str("path", f.path).Msg("Could not make the SQLite database readable by the bridge's user only; check its permissions (0600)")
	case f.tightened != 0:
		log.Warn().Str("path", f.path).Stringer("was", f.tightened).Stringer("now", sqliteFileMode).
			Msg("The SQLite database was readable by other users; made it readable by the bridge's user only")
	}
}

// sqlitePath is the file behind a go-sqlite3 data source name (a path or a
// file: URI with query parameters), or empty for an in-memory database.
func sqlitePath(uri string) string {
	path, query, _ := strings.Cut(strings.TrimPrefix(uri, "file:"), "?")
	if path == "" || path == ":memory:" || strings.Contains(query, "mode=memory") {
		return ""
	}
	return path
}
