"""The publisher's side: minisign secret keys and signing (`minisign`), and writing a signed feed
directory that any web server can serve (`feed`). A gateway only verifies: see agent.verify."""

from agent.publish.feed import publish, sign_file, write_keypair
from agent.publish.minisign import SecretKey, generate_keypair, sign

__all__ = ["SecretKey", "generate_keypair", "publish", "sign", "sign_file", "write_keypair"]
