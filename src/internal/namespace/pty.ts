/**
 * An interactive terminal for a command in a sandbox without native modules: the command
 * runs under a small Python helper (python3's `pty` module, inside the sandbox) that
 * allocates a pseudo-terminal, makes it the command's controlling terminal, and relays
 * bytes between it and the helper's stdin/stdout. Ctrl-C and friends travel as bytes and
 * become signals in the pty's line discipline, as in any terminal; window-size changes
 * travel in-band as a private OSC sequence (`ESC ] 777 ; volumes-winsize ; ROWS ; COLS BEL`)
 * that the helper removes from the input and applies with `TIOCSWINSZ` (the kernel then
 * sends SIGWINCH to the foreground job). The helper exits with the command's status
 * (128 + signal when it was killed).
 */

/** The private sequence that carries a window size in the input stream. */
const MARK = "\x1b]777;volumes-winsize;"

const HELPER = String.raw`
import os, pty, sys, select, struct, fcntl, termios
rows, cols = int(sys.argv[1]), int(sys.argv[2])
argv = sys.argv[3:]
MARK = b"\x1b]777;volumes-winsize;"
def winsize(fd, r, c):
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", r, c, 0, 0))
pid, master = pty.fork()
if pid == 0:
    winsize(0, rows, cols)
    try:
        os.execvp(argv[0], argv)
    except OSError as e:
        sys.stderr.write("%s: %s\r\n" % (argv[0], e.strerror))
        os._exit(127)
def write_all(fd, data):
    while data:
        data = data[os.write(fd, data):]
pending = b""
reading = True
while True:
    ready = select.select([master] + ([0] if reading else []), [], [])[0]
    if 0 in ready:
        data = os.read(0, 65536)
        if not data:
            reading = False
        pending += data
        while True:
            at = pending.find(MARK)
            if at < 0:
                break
            end = pending.find(b"\x07", at)
            if end < 0:
                break
            write_all(master, pending[:at])
            r, c = pending[at + len(MARK):end].split(b";")
            winsize(master, int(r), int(c))
            pending = pending[end + 1:]
        keep = 0
        for n in range(1, len(MARK)):
            if pending.endswith(MARK[:n]):
                keep = n
        write_all(master, pending[:len(pending) - keep])
        pending = pending[len(pending) - keep:]
    if master in ready:
        try:
            data = os.read(master, 65536)
        except OSError:
            data = b""
        if not data:
            break
        write_all(1, data)
status = os.waitpid(pid, 0)[1]
sys.exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status))
`

/** A terminal size in character cells. */
export interface WindowSize {
  readonly rows: number
  readonly cols: number
}

/** `cmd args` wrapped so that it runs on a fresh pseudo-terminal of `size` (needs python3 in the sandbox). */
export const command = (cmd: string, args: ReadonlyArray<string>, size: WindowSize): readonly [string, ReadonlyArray<string>] =>
  ["python3", ["-c", HELPER, String(size.rows), String(size.cols), cmd, ...args]]

/** The bytes that, sent in the command's input, resize its terminal. */
export const resize = (size: WindowSize): Uint8Array => new TextEncoder().encode(`${MARK}${size.rows};${size.cols}\x07`)
