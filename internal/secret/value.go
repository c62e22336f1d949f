package secret

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"

	"github.com/rs/zerolog"
)

// Redacted is what a [Secret] prints instead of its value.
const Redacted = "***"

// Secret is a password or token held in memory. Every way of printing or
// marshalling it (fmt verbs, String, JSON, text, YAML, zerolog, slog) writes
// [Redacted], so it cannot be logged or dumped by accident; [Secret.Reveal]
// is the one deliberate way to get the value. Decoding (JSON, text, YAML)
// takes the real value, so a Secret can be read from configuration.
type Secret string

// Reveal returns the value. Call it only where the value is sent to the
// party that needs it.
func (s Secret) Reveal() string { return string(s) }

// IsEmpty reports whether the secret has no value.
func (s Secret) IsEmpty() bool { return s == "" }

// String returns [Redacted].
func (s Secret) String() string { return Redacted }

// GoString returns [Redacted] so %#v does not print the value either.
func (s Secret) GoString() string { return Redacted }

// Format writes [Redacted] for every verb and flag (%s, %v, %q, %x, %d...).
func (s Secret) Format(f fmt.State, verb rune) {
	_, _ = io.WriteString(f, Redacted)
}

// MarshalJSON writes "***".
func (s Secret) MarshalJSON() ([]byte, error) { return json.Marshal(Redacted) }

// UnmarshalJSON reads the real value from a JSON string.
func (s *Secret) UnmarshalJSON(data []byte) error {
	var v string
	if err := json.Unmarshal(data, &v); err != nil {
		return fmt.Errorf("secret: decode JSON string: %w", err)
	}
	*s = Secret(v)
	return nil
}

// MarshalText writes "***"; yaml.v3 and encoding/xml use it too.
func (s Secret) MarshalText() ([]byte, error) { return []byte(Redacted), nil }

// UnmarshalText takes the value as it is.
func (s *Secret) UnmarshalText(text []byte) error {
	*s = Secret(text)
	return nil
}

// MarshalYAML writes "***" (yaml.v3 prefers this over MarshalText).
func (s Secret) MarshalYAML() (any, error) { return Redacted, nil }

// MarshalZerologObject writes {"value":"***"} when a Secret is logged with
// zerolog's Object; Interface and Stringer use MarshalJSON and String.
func (s Secret) MarshalZerologObject(e *zerolog.Event) { e.Str("value", Redacted) }

// LogValue makes log/slog print "***".
func (s Secret) LogValue() slog.Value { return slog.StringValue(Redacted) }
