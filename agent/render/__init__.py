"""The pure renderers: the merged blocklist and the isolation state as text for `nft -f` and as
an RPZ zone. No I/O here: the apply side (agent/backends/, agent/isolation/) loads the text."""
