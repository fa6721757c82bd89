//! Capture-rate probe for `bench/live.sh`: N workers (one fanout group) read an interface's
//! TPACKET_V3 rings, count frames and bytes, and report the kernel's drop counters.
//!
//! `live_rate IFACE WORKERS [IDLE_MS] [BLOCK_KIB] [BLOCKS]`; `FANOUT=flow-hash` in the
//! environment for the kernel's flow hash instead of the inner-pair program.
//!
//! Prints `ready` on stderr once every ring is open, then stops once frames have been seen and
//! none arrived for IDLE_MS (default 1000), printing one line:
//! `frames=.. bytes=.. kernel_packets=.. drops=.. freezes=.. first_to_last_s=..`.

use std::sync::Barrier;
use std::time::{Duration, Instant};

use tapir::capture::fanout::Fanout;
use tapir::capture::live::{LiveCapture, RingConfig};

/// One worker's counts: frames, bytes, kernel packets, drops, freezes, seconds first..last frame.
type Counts = (u64, u64, u64, u64, u64, f64);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: live_rate IFACE WORKERS [IDLE_MS] [BLOCK_KIB] [BLOCKS]");
        std::process::exit(2);
    }
    let num = |i: usize, default: u32| args.get(i).map(|s| s.parse::<u32>().expect("number")).unwrap_or(default);
    let iface = args[1].clone();
    let workers = num(2, 1).max(1);
    let idle = Duration::from_millis(num(3, 1000).into());
    let cfg = RingConfig {
        block_size: num(4, 1024) << 10,
        block_count: num(5, 64),
        fanout_group: (workers > 1).then_some(std::process::id() as u16),
        fanout: match std::env::var("FANOUT").as_deref() {
            Ok("flow-hash") => Fanout::FlowHash,
            _ => Fanout::InnerPair,
        },
        ..RingConfig::default()
    };
    let caps: Vec<LiveCapture> = (0..workers)
        .map(|_| LiveCapture::open(std::slice::from_ref(&iface), &cfg).unwrap_or_else(|e| panic!("{e}")))
        .collect();
    let barrier = Barrier::new(workers as usize + 1);
    let results: Vec<Counts> = std::thread::scope(|s| {
        let handles: Vec<_> = caps
            .into_iter()
            .map(|mut cap| {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    let (mut frames, mut bytes, mut touch) = (0u64, 0u64, 0u8);
                    let (mut first, mut last) = (None::<Instant>, Instant::now());
                    loop {
                        let n = cap
                            .poll(Duration::from_millis(50), &mut |fr| {
                                frames += 1;
                                bytes += fr.data.len() as u64;
                                // Read the headers as a decoder would.
                                touch ^= fr.data.iter().take(64).fold(0, |a, b| a ^ b);
                            })
                            .expect("poll");
                        let now = Instant::now();
                        if n > 0 {
                            first.get_or_insert(now);
                            last = now;
                        } else if first.is_some() && now - last > idle {
                            break;
                        }
                    }
                    let st = cap.stats().expect("stats");
                    let span = first.map(|f| (last - f).as_secs_f64()).unwrap_or(0.0);
                    std::hint::black_box(touch);
                    (frames, bytes, st.packets(), st.drops(), st.freezes(), span)
                })
            })
            .collect();
        barrier.wait();
        eprintln!("ready");
        handles.into_iter().map(|h| h.join().expect("worker")).collect()
    });
    let sum = |f: fn(&Counts) -> u64| results.iter().map(f).sum::<u64>();
    let span = results.iter().map(|r| r.5).fold(0.0, f64::max);
    let per_worker: Vec<String> = results.iter().map(|r| r.0.to_string()).collect();
    println!(
        "frames={} bytes={} kernel_packets={} drops={} freezes={} first_to_last_s={span:.3} per_worker={}",
        sum(|r| r.0),
        sum(|r| r.1),
        sum(|r| r.2),
        sum(|r| r.3),
        sum(|r| r.4),
        per_worker.join("/")
    );
}
