"""The end of a test's LEMF (shared/tools/lemf_check.py, run unchanged by hi2_lemf.py and
lemf_seqs.py): lemf_check's --idle end counts only from SIGUSR1, which the test sends once the
sender is done (its delivery confirmed, or tapir exited). Until then a pause in delivery (tapir
working between PDUs on a busy machine, beside the other tests of its process) does not end the
LEMF before the data is in. After SIGUSR1 it ends as lemf_check would, --idle seconds after the
last data; at --max in any case.
"""
import signal, sys, threading, time


def idle_end_from_usr1(lemf):
    """Call before lemf.main(), which reads sys.argv: lemf_check itself is left to stop at --max."""
    def arg(name, default):
        return sys.argv[sys.argv.index(name) + 1] if name in sys.argv else default

    idle = float(arg('--idle', '5'))
    if '--idle' in sys.argv:
        sys.argv[sys.argv.index('--idle') + 1] = arg('--max', '120')
    else:
        sys.argv += ['--idle', arg('--max', '120')]
    sender_done = threading.Event()
    signal.signal(signal.SIGUSR1, lambda *_: sender_done.set())

    def end_when_idle():
        sender_done.wait()
        while True:
            t = lemf.last_data[0]
            if t and time.time() - t > idle:
                lemf.last_data[0] = 1.0  # long ago: lemf_check's loop ends at its next look
            time.sleep(0.05)

    threading.Thread(target=end_when_idle, daemon=True).start()
