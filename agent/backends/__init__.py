"""The apply side: each enforcement point (nftables, a resolver) is a Backend that loads what
agent.render wrote, atomically, and says what it did; plus the nft and DNS clients they use."""
