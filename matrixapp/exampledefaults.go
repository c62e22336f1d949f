package matrixapp

// Encryption is on by default (docs/operator-guide.md, Encryption): a
// room a user encrypted, or that Synapse encrypts by itself
// (encryption_enabled_by_default_for_room_type, common where
// administrations run Matrix), must work, and without it the bridge can
// neither read nor write there. Portals the bridge creates stay
// unencrypted: the SfB side carries the text in clear anyway, and
// encrypting every message to every device of the room is work for
// nothing on 35,000 users' portals. The bot keeps mautrix's default way of
// getting its keys, /sync, which stock Synapse serves without
// experimental features.
const (
	mautrixEncryption = "encryption:\n" +
		"    # Whether to enable encryption at all. If false, the bridge will not function in encrypted rooms.\n" +
		"    allow: false\n" +
		"    # Whether to force-enable encryption in all bridged rooms.\n" +
		"    default: false\n"
	defaultEncryption = "encryption:\n" +
		"    # On: rooms that users, or Synapse (encryption_enabled_by_default_for_room_type), encrypt work.\n" +
		"    # The bridge bot gets a device and syncs for its keys; docs/operator-guide.md (Encryption).\n" +
		"    allow: true\n" +
		"    # Off: portals the bridge creates are not encrypted (the SfB side is in clear anyway).\n" +
		"    default: false\n"

	// mautrix's example carries a placeholder secret; the bridge's has
	// none until the operator made the second registration.
	mautrixDoublePuppetSecrets = "    secrets:\n" +
		"        example.com: as_token:foobar\n"
	defaultDoublePuppetSecrets = "    # For the homeserver's domain: as_token:<the as_token of a second registration for the\n" +
		"    # homeserver's users>; docs/operator-guide.md (Double puppeting) has the steps.\n" +
		"    secrets: {}\n"
)
