// Package dbscan reads a whole database for tests: the tables its schema
// holds now, and the rows of a table that mention a given text anywhere.
// Erasure tests use it so that a table added later, which erasure does not
// know about, is found rather than overlooked.
package dbscan

import (
	"context"
	"database/sql"
	"fmt"
	"sort"
	"strings"
)

// Tables lists the base tables of the database's current schema (SQLite's
// main schema, or PostgreSQL's current_schema()), sorted.
func Tables(ctx context.Context, db *sql.DB, postgres bool) ([]string, error) {
	query := `SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'`
	if postgres {
		query = `SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'`
	}
	rows, err := db.QueryContext(ctx, query)
	if err != nil {
		return nil, fmt.Errorf("list tables: %w", err)
	}
	defer rows.Close()
	var names []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return nil, fmt.Errorf("list tables: %w", err)
		}
		names = append(names, name)
	}
	sort.Strings(names)
	return names, rows.Err()
}

// Row is one row of a table, each column as text (NULL as "NULL").
type Row map[string]string

// Mentions returns the rows of table in which any column contains any of
// needles, compared without regard to letter case.
func Mentions(ctx context.Context, db *sql.DB, table string, needles ...string) ([]Row, error) {
	rows, err := db.QueryContext(ctx, `SELECT * FROM "`+strings.ReplaceAll(table, `"`, `""`)+`"`)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", table, err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", table, err)
	}
	var found []Row
	for rows.Next() {
		values := make([]sql.NullString, len(cols))
		ptrs := make([]any, len(cols))
		for i := range values {
			ptrs[i] = &values[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, fmt.Errorf("read %s: %w", table, err)
		}
		row := Row{}
		hit := false
		for i, v := range values {
			text := "NULL"
			if v.Valid {
				text = v.String
			}
			row[cols[i]] = text
			lower := strings.ToLower(text)
			for _, n := range needles {
				if n != "" && strings.Contains(lower, strings.ToLower(n)) {
					hit = true
				}
			}
		}
		if hit {
			found = append(found, row)
		}
	}
	return found, rows.Err()
}
