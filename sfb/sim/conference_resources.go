package sim

// Resources of a conference as one application sees it. The shapes are
// the 1:1 ones (conversation_ref.md, participant_ref.md,
// messagingInvitation_ref.md, message_ref.md) with what a conference adds:
// the onlineMeeting link of the conversation, its participantCount, the
// participant that sent each message.

func (s *Server) confConversation(v *convView) obj {
	c := v.conf
	res := v.conversation(s)
	links := res["_links"].(obj)
	links["onlineMeeting"] = link(v.href() + "/onlineMeeting")
	res["threadId"] = c.threadID
	res["subject"] = c.subject
	res["importance"] = c.importance
	res["participantCount"] = c.joinedCount()
	res["created"] = msDate(c.created)
	res["expirationTime"] = msDate(c.lastActivity.Add(s.opts.ConversationIdleTimeout))
	return res
}

// confInvitation is the incoming messagingInvitation to a conference: as
// the 1:1 one, without a message (the inviter adds a participant; nobody
// wrote yet), from the participant who invited.
func (s *Server) confInvitation(inv *invitation) obj {
	v := inv.view
	a := v.app
	c := v.conf
	h := a.base() + "/communication/messagingInvitations/" + inv.id
	to := a.user.uri
	if inv.direction == "Outgoing" {
		to = inv.to
	}
	links := obj{
		"self":         link(h),
		"to":           link(a.peopleHref(to)),
		"from":         titled(v.participantHref(inv.from), inv.fromName),
		"conversation": link(v.href()),
		"messaging":    link(v.href() + "/messaging"),
	}
	res := obj{
		"rel":        "messagingInvitation",
		"direction":  inv.direction,
		"importance": c.importance,
		"threadId":   c.threadID,
		"state":      inv.state,
		"subject":    c.subject,
		"to":         string(to),
		"_links":     links,
	}
	if inv.operationID != "" {
		res["operationId"] = inv.operationID
	}
	switch {
	case inv.direction == "Incoming":
		if inv.state == "Connecting" {
			links["accept"] = link(h + "/accept")
			links["decline"] = link(h + "/decline")
		}
		res["_embedded"] = obj{"from": v.participant(party{uri: inv.from, name: inv.fromName})}
	case inv.state == "Connecting":
		links["cancel"] = link(v.href() + "/messaging/terminate")
	case inv.state == "Connected":
		links["acceptedByContact"] = link(a.peopleHref(to))
		res["_embedded"] = obj{"acceptedByParticipant": []any{v.participant(party{uri: to, name: s.userOf(to).name})}}
	}
	return res
}

// participantInvitation is the outgoing invitation addParticipant starts
// (participantInvitation_ref.md).
func (s *Server) participantInvitation(inv *invitation) obj {
	v := inv.view
	a := v.app
	h := a.base() + "/communication/participantInvitations/" + inv.id
	links := obj{
		"self":         link(h),
		"conversation": link(v.href()),
		"from":         titled(v.participantHref(a.user.uri), a.user.name),
		"to":           link(a.peopleHref(inv.to)),
	}
	res := obj{
		"rel":        "participantInvitation",
		"direction":  "Outgoing",
		"importance": "Normal",
		"state":      inv.state,
		"to":         string(inv.to),
		"_links":     links,
	}
	if c := v.conf; c != nil {
		res["threadId"] = c.threadID
		res["subject"] = c.subject
	}
	if inv.operationID != "" {
		res["operationId"] = inv.operationID
	}
	if inv.state == "Connecting" {
		links["cancel"] = link(h + "/cancel")
	}
	if inv.state == "Connected" {
		links["participant"] = link(v.participantHref(inv.to))
		res["_embedded"] = obj{"acceptedByParticipant": []any{v.participant(party{uri: inv.to, name: s.userOf(inv.to).name})}}
	}
	return res
}
