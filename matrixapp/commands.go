package matrixapp

import (
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/commands"
)

// notForSfB are bridgev2's commands that mean nothing to a user of this
// bridge: SfB chats have no muting, blocking, deleting, searching or
// sticker packs, and a user has one login. They stay out of help; those
// that need a network feature still refuse to run. create-group (a Matrix
// room becomes an SfB group chat) and set-relay/unset-relay (Matrix users
// without a login write through another's) stay: see docs/groups.md.
var notForSfB = []*commands.FullHandler{
	commands.CommandMute, commands.CommandDeleteChat, commands.CommandBlockUser,
	commands.CommandCreatePortal, commands.CommandSearch, commands.CommandImportImagePack,
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
