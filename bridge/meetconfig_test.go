package bridge

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	up "go.mau.fi/util/configupgrade"
	"gopkg.in/yaml.v3"
)

func TestMeetingsConfigValidate(t *testing.T) {
	cases := map[string]struct {
		edit func(*MeetingsConfig)
		want string
	}{
		"domain with path":   {func(m *MeetingsConfig) { m.MeetingDomains = []string{"meet.contoso.com/x"} }, "meeting_domains[0]"},
		"domain with scheme": {func(m *MeetingsConfig) { m.MeetingDomains = []string{"https://meet.contoso.com"} }, "meeting_domains[0]"},
		"unknown zone":       {func(m *MeetingsConfig) { m.TimeZone = "Mars/Olympus" }, "time_zone"},
		"unknown call mode":  {func(m *MeetingsConfig) { m.Calls = "ring" }, "network.meetings.calls"},
		"no jitsi domain":    {func(m *MeetingsConfig) { m.Jitsi.Domain = "" }, "jitsi.domain"},
		"http widget": {func(m *MeetingsConfig) {
			m.Jitsi.WidgetURL = "http://element.example/jitsi.html#conferenceId=$conferenceId"
		}, "widget_url"},
		"widget without variables": {func(m *MeetingsConfig) { m.Jitsi.WidgetURL = "https://element.example/jitsi.html" }, "widget_url"},
	}
	for name, tc := range cases {
		cfg := defaultConfig()
		tc.edit(&cfg.Meetings)
		assert.ErrorContains(t, cfg.Validate(), tc.want, name)
	}
	cfg := defaultConfig()
	cfg.Meetings.MeetingDomains = []string{" Meet.Contoso.COM "}
	cfg.Meetings.TimeZone = "Europe/Berlin"
	require.NoError(t, cfg.Validate())
	assert.Equal(t, []string{"meet.contoso.com"}, cfg.Meetings.MeetingDomains)
	assert.Equal(t, "Europe/Berlin", cfg.Meetings.zone().String())
}

func TestUpgraderKeepsMeetingOptions(t *testing.T) {
	const mine = `
meetings:
    meeting_domains: [meet.contoso.com, lync.example.net]
    time_zone: Europe/Berlin
    calls: notice
    sfb_meetings: true
    jitsi:
        domain: jitsi.example.org
        widget_url: "https://element.example.org/jitsi.html#conferenceDomain=$domain&conferenceId=$conferenceId"
`
	var base, cfg yaml.Node
	require.NoError(t, yaml.Unmarshal([]byte(ExampleConfig), &base))
	require.NoError(t, yaml.Unmarshal([]byte(mine), &cfg))
	upgradeConfig(up.NewHelper(base.Content[0], cfg.Content[0]))
	out, err := yaml.Marshal(&base)
	require.NoError(t, err)
	var upgraded, want Config
	require.NoError(t, yaml.Unmarshal(out, &upgraded))
	require.NoError(t, yaml.Unmarshal([]byte(mine), &want))
	assert.Equal(t, want.Meetings, upgraded.Meetings)
	assert.NotEqual(t, defaultConfig().Meetings, upgraded.Meetings)
}
