package deliver

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// Limits of the aliases parser and resolver.
const (
	maxAliasLine  = 64 << 10 // one physical line
	maxAliasEntry = 1 << 20  // one logical entry with its continuation lines
	maxAliasDepth = 10       // nested aliases, as sendmail's MAXRCRSN-style cap
)

// ParseAliases parses the aliases(5) format: "name: target, target2".
// Lines starting with '#' are comments, blank lines are skipped, and a line
// starting with a space or tab continues the previous entry. Targets are
// split at commas outside double quotes and kept as written (quotes
// included), so the caller can recognise "|cmd", "/file", ":include:" and
// remote addresses. Alias names are lower-cased (sendmail compares them
// case-insensitively).
//
// A line without a colon, an empty name, a continuation line with nothing
// to continue or a name defined twice is an error naming the line: a broken
// aliases file is a configuration error, not something to half-apply.
func ParseAliases(r io.Reader) (map[string][]string, error) {
	out := make(map[string][]string)
	first := make(map[string]int)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxAliasLine)

	var entry strings.Builder
	entryLine, lineNo := 0, 0
	flush := func() error {
		if entryLine == 0 {
			return nil
		}
		s := entry.String()
		entry.Reset()
		ln := entryLine
		entryLine = 0
		name, rest, ok := strings.Cut(s, ":")
		if !ok {
			return fmt.Errorf("aliases:%d: missing ':' after alias name", ln)
		}
		name = strings.ToLower(strings.TrimSpace(name))
		if name == "" || hasUnsafe(name) {
			return fmt.Errorf("aliases:%d: invalid alias name %q", ln, name)
		}
		if prev, dup := first[name]; dup {
			return fmt.Errorf("aliases:%d: alias %q already defined at line %d", ln, name, prev)
		}
		first[name] = ln
		out[name] = splitTargets(rest)
		return nil
	}
	for sc.Scan() {
		lineNo++
		line := strings.TrimSuffix(sc.Text(), "\r")
		switch {
		case strings.TrimSpace(line) == "":
			// A blank line ends an entry; continuation must be adjacent.
			if err := flush(); err != nil {
				return nil, err
			}
		case line[0] == '#':
			// Comment lines are skipped without ending the entry, as
			// newaliases does.
		case line[0] == ' ' || line[0] == '\t':
			if entryLine == 0 {
				return nil, fmt.Errorf("aliases:%d: continuation line without an entry", lineNo)
			}
			if entry.Len()+len(line) > maxAliasEntry {
				return nil, fmt.Errorf("aliases:%d: entry longer than %d bytes", entryLine, maxAliasEntry)
			}
			entry.WriteByte(' ')
			entry.WriteString(strings.TrimSpace(line))
		default:
			if err := flush(); err != nil {
				return nil, err
			}
			entryLine = lineNo
			entry.WriteString(line)
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, fmt.Errorf("aliases:%d: line longer than %d bytes", lineNo+1, maxAliasLine)
		}
		return nil, fmt.Errorf("read aliases: %w", err)
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return out, nil
}

// splitTargets splits at commas outside double quotes; empty targets are
// dropped.
func splitTargets(s string) []string {
	var out []string
	start, inQuote := 0, false
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			if inQuote {
				i++
			}
		case '"':
			inQuote = !inQuote
		case ',':
			if !inQuote {
				if t := strings.TrimSpace(s[start:i]); t != "" {
					out = append(out, t)
				}
				start = i + 1
			}
		}
	}
	if start < len(s) {
		if t := strings.TrimSpace(s[start:]); t != "" {
			out = append(out, t)
		}
	}
	return out
}

// LoadAliases reads an aliases(5) file and adds its aliases to d. Only
// targets that are local names count: a configured user, another alias
// (resolved recursively up to 10 levels, loops cut) or an address of a user;
// other bare names are kept as candidates for SetSystemUsers. Everything
// else is ignored and listed by Ignored, never acted on:
//   - "|command" and "/file": popfetch never executes or writes what a
//     message can select: a header would pick the command or the file
//     (the MDA argument-injection class, PHPMailer CVE-2016-10033),
//   - ":include:/path": reading a further file on behalf of the aliases file
//     is sendmail's classic privilege problem; list the names instead,
//   - anything with '@': never forward off-host (no relaying: a message
//     must not be able to make popfetch an open relay).
//
// A syntax error leaves d unchanged, so a reload keeps the old aliases.
func (d *Directory) LoadAliases(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("open aliases: %w", err)
	}
	defer f.Close()
	return d.ReadAliases(f, path)
}

// ReadAliases is LoadAliases for a file the caller opened (and checked);
// name is used in errors.
func (d *Directory) ReadAliases(r io.Reader, name string) error {
	raw, err := ParseAliases(r)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	d.setAliases(raw)
	return nil
}

// setAliases resolves raw (name → targets) into d.aliases.
func (d *Directory) setAliases(raw map[string][]string) {
	res := make(map[string]aliasExp, len(raw))
	var ignored []string
	names := make([]string, 0, len(raw))
	for n := range raw {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		var exp aliasExp
		seen := map[string]bool{n: true}
		d.expand(raw, n, []string{n}, seen, &exp, &ignored)
		res[n] = exp
	}
	d.aliases = res
	d.aliasIgnored = ignored // a reload replaces the old list
}

// expand adds the users reachable from alias name to exp by depth-first
// search along path (the aliases being expanded, for loop detection). seen
// makes every alias expand at most once per top-level name, so a file with
// wide fan-out costs O(names × edges), not exponential time. Expansion runs
// once at load time, so its cost does not depend on mail.
func (d *Directory) expand(raw map[string][]string, name string, path []string, seen map[string]bool, exp *aliasExp, ignored *[]string) {
	for _, t := range raw[name] {
		why := ""
		switch {
		case strings.HasPrefix(t, "|"), strings.HasPrefix(t, `"|`):
			why = "pipe"
		case strings.HasPrefix(t, "/"), strings.HasPrefix(t, `"/`):
			why = "file"
		case strings.HasPrefix(strings.ToLower(t), ":include:"):
			why = ":include:"
		case strings.Contains(t, "@"):
			why = "remote address"
		case strings.HasPrefix(t, `"`) || hasUnsafe(t):
			why = "invalid name"
		}
		if why != "" {
			*ignored = append(*ignored, fmt.Sprintf("alias %s: %s target %q ignored", path[0], why, t))
			continue
		}
		// A configured user name or address wins over an alias of the
		// same name, as in LookupAll.
		if d.users[t] {
			exp.add(t)
			continue
		}
		if u, ok := d.byLocal[d.fold(t)]; ok {
			exp.add(u)
			continue
		}
		if _, ok := raw[strings.ToLower(t)]; ok {
			lt := strings.ToLower(t)
			if contains(path, lt) {
				*ignored = append(*ignored, fmt.Sprintf("alias %s: loop %s → %s cut", path[0], strings.Join(path, " → "), lt))
				continue
			}
			if seen[lt] {
				continue // reached before by another path; its users are in exp
			}
			if len(path) >= maxAliasDepth {
				*ignored = append(*ignored, fmt.Sprintf("alias %s: nested deeper than %d at %s", path[0], maxAliasDepth, lt))
				continue
			}
			seen[lt] = true
			d.expand(raw, lt, append(path, lt), seen, exp, ignored)
			continue
		}
		if validSystemName(d.fold(t)) {
			exp.addSys(d.fold(t))
			continue
		}
		*ignored = append(*ignored, fmt.Sprintf("alias %s: unknown target %q ignored", path[0], t))
	}
}

func (e *aliasExp) add(u string) {
	if !contains(e.users, u) {
		e.users = append(e.users, u)
	}
}

func (e *aliasExp) addSys(u string) {
	if !contains(e.sys, u) {
		e.sys = append(e.sys, u)
	}
}
