"""zerolab's system under test: the article's guestbook server in seven architectures over one
sans-IO core (protocol, app, static, guestbook, resp) that never touches a socket."""
