"""Guest images built locally from Debian packages and cached by recipe hash."""
