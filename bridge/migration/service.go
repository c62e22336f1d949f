package migration

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/id"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/database"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// DefaultPollInterval is how often a Service looks for changes made by
// other processes; well inside the minute a mode change may take.
const DefaultPollInterval = 10 * time.Second

// ErrNotFound is wrapped by lookups of a wave or person nobody assigned.
var ErrNotFound = database.ErrNotFound

// ErrInvalid is matched (errors.Is) by errors about the caller's input: a
// malformed address, mode, wave name or import file. Their messages say
// what to do.
var ErrInvalid = errors.New("invalid input")

type invalidError struct{ err error }

func (e invalidError) Error() string        { return e.err.Error() }
func (e invalidError) Unwrap() error        { return e.err }
func (e invalidError) Is(target error) bool { return target == ErrInvalid }

func invalid(err error) error { return invalidError{err} }

// Resolver is what the bridge asks about modes: a person's mode now, and
// every change from now on. ModeOf answers from memory and never blocks
// on the database.
type Resolver interface {
	// ModeOf returns the effective mode of an SfB address (with or
	// without "sip:"); people nobody assigned have the default mode.
	ModeOf(address string) Mode
	// ModeOfMatrixUser returns the effective mode of the person a Matrix
	// user is, and false for a Matrix user nobody assigned.
	ModeOfMatrixUser(user id.UserID) (Mode, bool)
	// Subscribe calls fn with each batch of changes, in order, from its
	// own goroutine, until cancel is called.
	Subscribe(fn func([]Change)) (cancel func())
}

// Change is a person's effective mode changing.
type Change struct {
	Address    string
	MatrixUser id.UserID
	From, To   Mode
}

// LoginStatus sums up a person's bridge login for counting.
type LoginStatus string

// The login statuses.
const (
	LoginNone       LoginStatus = "none"       // no bridge login
	LoginConnecting LoginStatus = "connecting" // signed in, not connected now
	LoginConnected  LoginStatus = "connected"
	LoginError      LoginStatus = "error" // needs the person or an operator
)

// Login is what the bridge knows of a person's login.
type Login struct {
	Status LoginStatus `json:"status"`
	// State is the bridge state (CONNECTED, BAD_CREDENTIALS, ...).
	State string `json:"state,omitempty"`
	// Error is the last error's code and message, if any.
	Error string `json:"error,omitempty"`
}

// LoginsFunc tells the login of an address; the bridge provides it from
// the logins it has loaded.
type LoginsFunc func(address string) Login

// Actor is who does an admin action and from where, for the audit log.
type Actor struct {
	Who  string // a Matrix user ID, or "provisioning secret"
	From string // a remote address, a management room
}

// Options configure a Service.
type Options struct {
	PollInterval  time.Duration     // DefaultPollInterval when zero
	Logins        LoginsFunc        // nil: every person counts as not signed in
	Announcements AnnouncementsFunc // nil: nobody was told anything
}

// Service keeps the mode tables in memory, resolves modes, and makes the
// migration team's changes.
type Service struct {
	db        *database.DB
	log       zerolog.Logger
	poll      time.Duration
	logins    LoginsFunc
	announced AnnouncementsFunc

	// refreshMu serialises reading the tables, so that batches of
	// changes go out in order.
	refreshMu sync.Mutex
	mu        sync.RWMutex
	snap      *snapshot
	subs      map[int]*subscriber
	nextSub   int
}

var _ Resolver = (*Service)(nil)

// New returns a Service on db's mode tables; Refresh (or Run) loads them.
func New(db *database.DB, log zerolog.Logger, opts Options) *Service {
	if opts.PollInterval <= 0 {
		opts.PollInterval = DefaultPollInterval
	}
	if opts.Logins == nil {
		opts.Logins = func(string) Login { return Login{Status: LoginNone} }
	}
	if opts.Announcements == nil {
		opts.Announcements = func(string, string) *Announced { return nil }
	}
	return &Service{
		db: db, log: log.With().Str("component", "migration").Logger(),
		poll: opts.PollInterval, logins: opts.Logins, announced: opts.Announcements,
		snap: emptySnapshot(), subs: map[int]*subscriber{},
	}
}

// snapshot is the mode tables as of one generation, indexed.
type snapshot struct {
	gen       int64
	loaded    bool
	def       Mode
	waves     map[string]database.Wave
	waveNames []string
	people    map[string]database.Person
	byMatrix  map[id.UserID]string
	effective map[string]Mode
}

func emptySnapshot() *snapshot {
	return &snapshot{def: SfBOnly, waves: map[string]database.Wave{}, people: map[string]database.Person{},
		byMatrix: map[id.UserID]string{}, effective: map[string]Mode{}}
}

func newSnapshot(t *database.ModeTables) *snapshot {
	s := emptySnapshot()
	s.gen, s.loaded, s.def = t.Generation, true, Mode(t.DefaultMode)
	for _, w := range t.Waves {
		s.waves[w.Name] = w
		s.waveNames = append(s.waveNames, w.Name)
	}
	for _, p := range t.People {
		s.people[p.Address] = p
		s.byMatrix[id.UserID(p.MatrixUser)] = p.Address
		s.effective[p.Address], _ = s.resolve(p)
	}
	return s
}

func (s *snapshot) resolve(p database.Person) (Mode, Source) {
	var waveMode Mode
	if p.Wave != "" {
		waveMode = Mode(s.waves[p.Wave].Mode)
	}
	return Effective(Mode(p.Mode), waveMode, s.def)
}

func (s *snapshot) modeOf(address string) Mode {
	if m, ok := s.effective[address]; ok {
		return m
	}
	return s.def
}

// canonical turns "sip:Alice@Contoso.com" into "alice@contoso.com".
func canonical(address string) (string, error) {
	uri, err := sfb.ParseURI(address)
	if err != nil {
		return "", err
	}
	return uri.Address(), nil
}

// ModeOf implements Resolver.
func (s *Service) ModeOf(address string) Mode {
	s.mu.RLock()
	defer s.mu.RUnlock()
	canon, err := canonical(address)
	if err != nil {
		return s.snap.def
	}
	return s.snap.modeOf(canon)
}

// ModeOfMatrixUser implements Resolver.
func (s *Service) ModeOfMatrixUser(user id.UserID) (Mode, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	address, ok := s.snap.byMatrix[user]
	if !ok {
		return "", false
	}
	return s.snap.modeOf(address), true
}

// Subscribe implements Resolver. A slow subscriber holds up nobody: its
// batches queue for it, none is dropped.
func (s *Service) Subscribe(fn func([]Change)) (cancel func()) {
	sub := &subscriber{wake: make(chan struct{}, 1), done: make(chan struct{})}
	s.mu.Lock()
	n := s.nextSub
	s.nextSub++
	s.subs[n] = sub
	s.mu.Unlock()
	go sub.run(fn)
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			delete(s.subs, n)
			s.mu.Unlock()
			close(sub.done)
		})
	}
}

// subscriber queues the batches of changes for one Subscribe callback.
type subscriber struct {
	mu      sync.Mutex
	pending [][]Change
	wake    chan struct{}
	done    chan struct{}
}

func (sub *subscriber) push(batch []Change) {
	sub.mu.Lock()
	sub.pending = append(sub.pending, batch)
	sub.mu.Unlock()
	select {
	case sub.wake <- struct{}{}:
	default:
	}
}

func (sub *subscriber) run(fn func([]Change)) {
	for {
		select {
		case <-sub.done:
			return
		case <-sub.wake:
		}
		sub.mu.Lock()
		batches := sub.pending
		sub.pending = nil
		sub.mu.Unlock()
		for _, batch := range batches {
			fn(batch)
		}
	}
}

// Run refreshes every poll interval until ctx ends.
func (s *Service) Run(ctx context.Context) {
	ticker := time.NewTicker(s.poll)
	defer ticker.Stop()
	for {
		if err := s.Refresh(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn().Err(err).Msg("Could not read migration modes; using the ones read before")
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// Refresh reads the tables again if their generation changed since the
// last read, and tells subscribers whose mode changed.
func (s *Service) Refresh(ctx context.Context) error {
	s.refreshMu.Lock()
	defer s.refreshMu.Unlock()
	gen, err := s.db.ModeGeneration(ctx)
	if err != nil {
		return err
	}
	s.mu.RLock()
	old := s.snap
	s.mu.RUnlock()
	if old.loaded && old.gen == gen {
		return nil
	}
	tables, err := s.db.ReadModeTables(ctx)
	if err != nil {
		return err
	}
	next := newSnapshot(tables)
	changes := diff(old, next)
	s.mu.Lock()
	s.snap = next
	if len(changes) > 0 {
		for _, sub := range s.subs {
			sub.push(changes)
		}
	}
	s.mu.Unlock()
	if len(changes) > 0 {
		s.log.Info().Int64("generation", next.gen).Int("changes", len(changes)).Msg("Migration modes changed")
	}
	return nil
}

func diff(old, next *snapshot) []Change {
	var changes []Change
	seen := map[string]bool{}
	for address, p := range next.people {
		seen[address] = true
		if from, to := old.modeOf(address), next.modeOf(address); from != to {
			changes = append(changes, Change{Address: address, MatrixUser: id.UserID(p.MatrixUser), From: from, To: to})
		}
	}
	for address, p := range old.people {
		if !seen[address] && old.modeOf(address) != next.def {
			changes = append(changes, Change{Address: address, MatrixUser: id.UserID(p.MatrixUser), From: old.modeOf(address), To: next.def})
		}
	}
	sort.Slice(changes, func(i, j int) bool { return changes[i].Address < changes[j].Address })
	return changes
}

// current refreshes (so that a reader sees its own and others' latest
// changes) and returns the snapshot.
func (s *Service) current(ctx context.Context) (*snapshot, error) {
	if err := s.Refresh(ctx); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.snap, nil
}

// auditEvent builds the entry of an admin action.
func auditEvent(action string, by Actor, address, matrixUser, detail string) database.AuditEvent {
	return database.AuditEvent{Action: action, Actor: by.Who, Origin: by.From, LoginID: address, MatrixUser: matrixUser, Detail: detail}
}

// afterWrite makes this process see its own change at once.
func (s *Service) afterWrite(ctx context.Context) {
	if err := s.Refresh(ctx); err != nil {
		s.log.Warn().Err(err).Msg("Could not read migration modes after a change; the next poll will")
	}
}

// PutWave creates a wave or changes its planned start (zero: none).
func (s *Service) PutWave(ctx context.Context, name string, plannedStart time.Time, by Actor) error {
	if reason := checkWaveName(name); reason != "" {
		return invalid(errors.New(reason))
	}
	start := "none"
	if !plannedStart.IsZero() {
		start = plannedStart.UTC().Format(time.RFC3339)
	}
	err := s.db.PutWave(ctx, name, plannedStart, auditEvent(database.AuditWaveSet, by, "", "", fmt.Sprintf("wave %q planned start %s", name, start)))
	if err != nil {
		return err
	}
	s.afterWrite(ctx)
	return nil
}

// SetWaveMode sets a wave's mode; "" clears it (its people then follow
// the default unless they have their own).
func (s *Service) SetWaveMode(ctx context.Context, name string, mode Mode, by Actor) error {
	err := s.db.SetWaveMode(ctx, name, string(mode), auditEvent(database.AuditWaveModeSet, by, "", "", fmt.Sprintf("wave %q mode %s", name, modeText(mode))))
	if errors.Is(err, database.ErrNotFound) {
		return fmt.Errorf("there is no wave %q: %w", name, ErrNotFound)
	}
	if err != nil {
		return err
	}
	s.afterWrite(ctx)
	return nil
}

// SetPersonMode sets one person's own mode; "" clears it (their wave's
// or the default applies).
func (s *Service) SetPersonMode(ctx context.Context, address string, mode Mode, by Actor) error {
	canon, err := canonical(address)
	if err != nil {
		return invalid(fmt.Errorf("%q is not a SIP address (write it as name@domain): %w", address, err))
	}
	p, err := s.db.GetPerson(ctx, canon)
	if errors.Is(err, database.ErrNotFound) {
		return fmt.Errorf("nobody with the address %s was imported yet; import them first (a CSV row with their Matrix ID and wave): %w", canon, ErrNotFound)
	}
	if err != nil {
		return err
	}
	err = s.db.SetPersonMode(ctx, canon, string(mode), auditEvent(database.AuditPersonModeSet, by, canon, p.MatrixUser, "mode "+modeText(mode)))
	if err != nil {
		return err
	}
	s.afterWrite(ctx)
	return nil
}

// SetDefaultMode sets the mode of people whom neither they nor their wave
// give one.
func (s *Service) SetDefaultMode(ctx context.Context, mode Mode, by Actor) error {
	if _, err := ParseMode(string(mode)); err != nil {
		return invalid(err)
	}
	if err := s.db.SetDefaultMode(ctx, string(mode), auditEvent(database.AuditDefaultModeSet, by, "", "", "default mode "+string(mode))); err != nil {
		return err
	}
	s.afterWrite(ctx)
	return nil
}

// Audit returns the newest audit entries, of one person when address is
// not empty; address may also be the pseudonym of an erased person.
func (s *Service) Audit(ctx context.Context, address string, limit int) ([]database.AuditEvent, error) {
	if address != "" && !strings.HasPrefix(address, database.PseudonymPrefix) {
		canon, err := canonical(address)
		if err != nil {
			return nil, invalid(fmt.Errorf("%q is not a SIP address (write it as name@domain): %w", address, err))
		}
		address = canon
	}
	return s.db.ListAudit(ctx, address, limit)
}

func modeText(m Mode) string {
	if m == "" {
		return "cleared"
	}
	return string(m)
}
