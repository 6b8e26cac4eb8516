#!/usr/bin/env python3
"""Runs the real tokio-console against ADDR in a pseudo-terminal for a few seconds, keeps what
it drew (through the `pyte` terminal emulator, from PyPI) and writes it as an HTML page with
the terminal's colours, for headless Chromium to photograph.

    console_screen.py CONSOLE_BIN ADDR OUT.html [--seconds 8] [--cols 150] [--rows 34]
"""
import argparse
import html
import os
import pty
import select
import signal
import struct
import sys
import termios
import fcntl
import time

import pyte

COLOURS = {
    "black": "#1e1e1e", "red": "#e06c75", "green": "#98c379", "brown": "#d19a66",
    "yellow": "#e5c07b", "blue": "#61afef", "magenta": "#c678dd", "cyan": "#56b6c2",
    "white": "#dcdfe4", "default": None,
}


def colour(name, fallback):
    if name in COLOURS:
        return COLOURS[name] or fallback
    if len(name) == 6 and all(c in "0123456789abcdefABCDEF" for c in name):
        return "#" + name
    return fallback


def render(screen):
    fg_default, bg_default = "#dcdfe4", "#1e1e1e"
    rows = []
    for y in range(screen.lines):
        line = screen.buffer[y]
        spans, run, style = [], "", None
        for x in range(screen.columns):
            ch = line[x]
            fg, bg = colour(ch.fg, fg_default), colour(ch.bg, bg_default)
            if ch.reverse:
                fg, bg = bg, fg
            s = f"color:{fg};background:{bg};" + ("font-weight:bold;" if ch.bold else "")
            if s != style and run:
                spans.append(f'<span style="{style}">{html.escape(run)}</span>')
                run = ""
            style = s
            run += ch.data or " "
        if run:
            spans.append(f'<span style="{style}">{html.escape(run)}</span>')
        rows.append("".join(spans))
    body = "\n".join(rows)
    return (
        "<!doctype html><meta charset=utf-8><style>body{margin:0;background:%s}"
        "pre{margin:0;padding:8px;font:14px/1.25 'DejaVu Sans Mono',monospace}</style><pre>%s</pre>"
        % (bg_default, body)
    )


def main():
    p = argparse.ArgumentParser()
    p.add_argument("console")
    p.add_argument("addr")
    p.add_argument("out")
    p.add_argument("--seconds", type=float, default=8)
    p.add_argument("--cols", type=int, default=150)
    p.add_argument("--rows", type=int, default=34)
    a = p.parse_args()

    screen = pyte.Screen(a.cols, a.rows)
    stream = pyte.ByteStream(screen)
    pid, fd = pty.fork()
    if pid == 0:
        os.environ["TERM"] = "xterm-256color"
        os.execv(a.console, [a.console, a.addr])
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", a.rows, a.cols, 0, 0))
    os.kill(pid, signal.SIGWINCH)
    deadline = time.monotonic() + a.seconds
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.2)
            if ready:
                try:
                    data = os.read(fd, 65536)
                except OSError:
                    break
                if not data:
                    break
                stream.feed(data)
    finally:
        os.kill(pid, signal.SIGTERM)
        os.waitpid(pid, 0)
    text = "\n".join(screen.display)
    if "Tasks" not in text and "tasks" not in text:
        sys.exit("console_screen.py: tokio-console drew no task list:\n" + text)
    with open(a.out, "w") as f:
        f.write(render(screen))


if __name__ == "__main__":
    main()
