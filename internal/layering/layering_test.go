// Package layering holds the test that keeps the import rules of the
// architecture: SfB code knows nothing of Matrix, the database knows no
// protocol, and the connector reaches SfB only through the transport-neutral
// interface, so that a second transport (SIP) can replace UCWA.
package layering

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const module = "github.com/sfb-matrix-bridge/sfb-matrix-bridge"

// rule forbids packages under from to depend, directly or through other
// packages of this module, on anything with one of the prefixes.
type rule struct {
	from      string
	forbidden []string
	why       string
}

var rules = []rule{
	{"sfb", []string{"maunium.net/go/mautrix", module + "/bridge", module + "/matrixapp", module + "/database"},
		"the SfB protocol library imports nothing Matrix and nothing of the bridge"},
	{"database", []string{"maunium.net/go/mautrix", module + "/sfb", module + "/bridge"},
		"the database knows plain values, no protocol types"},
	{"bridge", []string{module + "/sfb/ucwa", module + "/sfb/sip", module + "/sfb/sim", module + "/matrixapp"},
		"the connector reaches SfB only through the interface in sfb/"},
}

// graph maps each package of the module (import path) to its imports,
// test files excluded: tests may use the simulator.
func graph(t *testing.T, root string) map[string][]string {
	t.Helper()
	g := map[string][]string{}
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); path != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "bin") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, filepath.Dir(path))
		if err != nil {
			return err
		}
		pkg := module
		if rel != "." {
			pkg += "/" + filepath.ToSlash(rel)
		}
		for _, imp := range f.Imports {
			p, err := strconv.Unquote(imp.Path.Value)
			if err != nil {
				return err
			}
			g[pkg] = append(g[pkg], p)
		}
		if _, ok := g[pkg]; !ok {
			g[pkg] = nil
		}
		return nil
	})
	require.NoError(t, err)
	return g
}

// deps is every import reachable from pkg, with the path that reaches it.
func deps(g map[string][]string, pkg string) map[string]string {
	via := map[string]string{}
	var visit func(p, path string)
	visit = func(p, path string) {
		for _, imp := range g[p] {
			if _, seen := via[imp]; seen {
				continue
			}
			via[imp] = path + " -> " + imp
			if strings.HasPrefix(imp, module+"/") {
				visit(imp, via[imp])
			}
		}
	}
	visit(pkg, pkg)
	return via
}

func TestImportRules(t *testing.T) {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	require.NoError(t, err)
	_, err = os.Stat(filepath.Join(root, "go.mod"))
	require.NoError(t, err, "the module root must be two levels up")
	g := graph(t, root)
	checked := 0
	for _, r := range rules {
		prefix := module + "/" + r.from
		var pkgs []string
		for p := range g {
			if p == prefix || strings.HasPrefix(p, prefix+"/") {
				pkgs = append(pkgs, p)
			}
		}
		sort.Strings(pkgs)
		require.NotEmpty(t, pkgs, "no package under %s: is the rule stale?", r.from)
		for _, p := range pkgs {
			checked++
			for _, v := range violations(g, p, r) {
				t.Error(v)
			}
		}
	}
	require.GreaterOrEqual(t, checked, 6, "too few packages checked: the walk is broken")
}

// violations lists the forbidden imports reachable from pkg under r, each
// with the path that reaches it, sorted.
func violations(g map[string][]string, pkg string, r rule) []string {
	var found []string
	for imp, path := range deps(g, pkg) {
		for _, bad := range r.forbidden {
			if imp == bad || strings.HasPrefix(imp, bad+"/") {
				found = append(found, pkg+": "+path+" ("+r.why+")")
			}
		}
	}
	sort.Strings(found)
	return found
}

// TestRulesCatchAViolation makes sure the check itself can fail: an
// indirect import of a forbidden package or of a package under it is
// found, a package that merely shares a name prefix is not.
func TestRulesCatchAViolation(t *testing.T) {
	r := rule{"bridge", []string{module + "/sfb/ucwa"}, "test"}
	g := map[string][]string{
		module + "/bridge":   {module + "/bridge/x", module + "/sfb/ucwaref"},
		module + "/bridge/x": {module + "/sfb/ucwa/internal"},
	}
	require.Equal(t, []string{
		module + "/bridge: " + module + "/bridge -> " + module + "/bridge/x -> " + module + "/sfb/ucwa/internal (test)",
	}, violations(g, module+"/bridge", r))
	require.Empty(t, violations(map[string][]string{module + "/bridge": {module + "/sfb"}}, module+"/bridge", r))
}
