package bridge

import (
	"fmt"
	"strings"
	"time"

	// Meeting times are shown in the configured zone, also in containers
	// without a zone database.
	_ "time/tzdata"

	up "go.mau.fi/util/configupgrade"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/bridge/jitsi"
)

// MeetingsConfig is the meetings section (see docs/meetings.md).
type MeetingsConfig struct {
	// MeetingDomains are the hosts (with their subdomains) whose SfB join
	// URLs become links; the users' own SIP domains always count.
	MeetingDomains []string `yaml:"meeting_domains"`
	// TimeZone is the zone meeting times are written in (IANA name).
	TimeZone string `yaml:"time_zone"`
	// Calls is what an incoming SfB audio/video call becomes.
	Calls CallMode `yaml:"calls"`
	// SfBMeetings allows `meet --sfb`, which creates an SfB online
	// meeting through the user's login.
	SfBMeetings bool `yaml:"sfb_meetings"`
	// Jitsi is the Jitsi deployment that Matrix users meet in.
	Jitsi JitsiConfig `yaml:"jitsi"`

	location *time.Location
}

// JitsiConfig says where Jitsi meetings are held and how Element finds them.
type JitsiConfig struct {
	// Domain is the Jitsi server's host name, as Element's jitsi.preferred_domain.
	Domain string `yaml:"domain"`
	// WidgetURL is the widget URL template (see jitsi.DefaultWidgetURL).
	WidgetURL string `yaml:"widget_url"`
}

// CallMode says what an incoming SfB call becomes on Matrix.
type CallMode string

const (
	// CallsOff leaves calls to the user's other SfB endpoints.
	CallsOff CallMode = "off"
	// CallsNotice posts a call notice and declines the call.
	CallsNotice CallMode = "notice"
	// CallsJitsi also starts a Jitsi meeting in the room and sends the
	// caller its link.
	CallsJitsi CallMode = "jitsi"
)

func defaultMeetingsConfig() MeetingsConfig {
	return MeetingsConfig{
		MeetingDomains: []string{},
		TimeZone:       "UTC",
		Calls:          CallsJitsi,
		Jitsi:          JitsiConfig{Domain: "meet.element.io", WidgetURL: jitsi.DefaultWidgetURL},
	}
}

func (m *MeetingsConfig) validate() error {
	for i, d := range m.MeetingDomains {
		d = strings.ToLower(strings.TrimSpace(d))
		if err := jitsi.CheckDomain(d); err != nil {
			return fmt.Errorf("network.meetings.meeting_domains[%d] %q: a host name such as meet.contoso.com: %w", i, m.MeetingDomains[i], err)
		}
		m.MeetingDomains[i] = d
	}
	loc, err := time.LoadLocation(m.TimeZone)
	if err != nil {
		return fmt.Errorf("network.meetings.time_zone %q: an IANA zone such as Europe/Berlin: %w", m.TimeZone, err)
	}
	m.location = loc
	if err := oneOf("network.meetings.calls", m.Calls, CallsOff, CallsNotice, CallsJitsi); err != nil {
		return err
	}
	if err := jitsi.CheckDomain(m.Jitsi.Domain); err != nil {
		return fmt.Errorf("network.meetings.jitsi.domain: %w", err)
	}
	if err := jitsi.CheckWidgetURL(m.Jitsi.WidgetURL); err != nil {
		return fmt.Errorf("network.meetings.jitsi.widget_url: %w", err)
	}
	return nil
}

// zone is where meeting times are shown.
func (m *MeetingsConfig) zone() *time.Location {
	if m.location == nil {
		if loc, err := time.LoadLocation(m.TimeZone); err == nil {
			m.location = loc
		} else {
			m.location = time.UTC
		}
	}
	return m.location
}

func upgradeMeetingsConfig(helper up.Helper) {
	helper.Copy(up.List, "meetings", "meeting_domains")
	helper.Copy(up.Str, "meetings", "time_zone")
	helper.Copy(up.Str, "meetings", "calls")
	helper.Copy(up.Bool, "meetings", "sfb_meetings")
	helper.Copy(up.Str, "meetings", "jitsi", "domain")
	helper.Copy(up.Str, "meetings", "jitsi", "widget_url")
}
