package matrixapp

import (
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/commands"
)

// notForSfB are bridgev2's commands that mean nothing to a user of this
// bridge: SfB 1:1 chats have no muting, blocking, deleting, searching,
// groups, sticker packs or relays, and a user has one login. They stay
// out of help; those that need a network feature still refuse to run.
var notForSfB = []*commands.FullHandler{
	commands.CommandMute, commands.CommandDeleteChat, commands.CommandBlockUser,
	commands.CommandCreateGroup, commands.CommandCreatePortal, commands.CommandSearch,
	commands.CommandImportImagePack, commands.CommandSetRelay, commands.CommandUnsetRelay,
	commands.CommandBridge, commands.CommandUnbridge, commands.CommandSetPreferredLogin,
	commands.CommandID,
}

// hiddenCommand is a command left out of help.
type hiddenCommand struct {
	*commands.FullHandler
}

func (hiddenCommand) ShowInHelp(*commands.Event) bool { return false }

// hideCommands takes the commands that mean nothing here out of help.
func hideCommands(proc bridgev2.CommandProcessor) {
	p, ok := proc.(*commands.Processor)
	if !ok {
		return
	}
	for _, h := range notForSfB {
		p.AddHandler(hiddenCommand{h})
	}
}
