//! The blocking application API over in-memory links: several connections at once moving
//! verified data both ways, clean shutdown, errors surfaced as `io::Error` kinds, and a path
//! removed mid-transfer. Root-free; sizes are bounded and seeds fixed; timeouts are generous
//! and nothing asserts on timing.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use mptcp_stack::api::{ConnectOptions, MptcpListener, MptcpStream, Stack, StackConfig};
use mptcp_stack::driver::MemoryDevice;
use mptcp_stack::mptcp::{Mode, SchedulerKind};

const A1: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 1, 0, 1));
const A2: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 2, 0, 1));
const B1: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 1, 0, 2));
const B2: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 2, 0, 2));

/// Two stacks joined by an in-memory link, with the given addresses.
fn stacks(a: &[IpAddr], b: &[IpAddr]) -> (Stack, Stack) {
    let (dev_a, dev_b) = MemoryDevice::pair(1500, 512);
    let mut ca = StackConfig::new().seed(11);
    for &ip in a {
        ca = ca.address(ip);
    }
    let mut cb = StackConfig::new().seed(22);
    for &ip in b {
        cb = cb.address(ip);
    }
    (
        Stack::new(dev_a, ca).expect("stack a"),
        Stack::new(dev_b, cb).expect("stack b"),
    )
}

/// `len` bytes of a pattern that depends on `seed`.
fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Fail instead of hanging: reads and writes give up after a minute.
fn guard(s: &MptcpStream) {
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(60))).unwrap();
}

#[test]
fn concurrent_connections_move_verified_data_both_ways() {
    const CONNS: u64 = 4;
    const LEN: usize = 300_000;
    let (a, b) = stacks(&[A1], &[B1]);
    let listener = MptcpListener::bind(&b, 5000).unwrap();
    // The server answers each connection with the bytes it received, transformed, while it is
    // still receiving (both directions at once).
    let server = thread::spawn(move || {
        let mut workers = Vec::new();
        for stream in listener.incoming().take(CONNS as usize) {
            let stream = Arc::new(stream.unwrap());
            guard(&stream);
            workers.push(thread::spawn(move || {
                let mut buf = vec![0u8; 16 * 1024];
                let mut total = 0;
                loop {
                    let n = (&*stream).read(&mut buf).unwrap();
                    if n == 0 {
                        break;
                    }
                    let out: Vec<u8> = buf[..n].iter().map(|x| x ^ 0x5a).collect();
                    (&*stream).write_all(&out).unwrap();
                    total += n;
                }
                stream.shutdown(Shutdown::Write).unwrap();
                total
            }));
        }
        workers
            .into_iter()
            .map(|w| w.join().unwrap())
            .sum::<usize>()
    });
    let a = Arc::new(a);
    let clients: Vec<_> = (0..CONNS)
        .map(|i| {
            let a = a.clone();
            thread::spawn(move || {
                let stream = Arc::new(MptcpStream::connect(&a, SocketAddr::new(B1, 5000)).unwrap());
                guard(&stream);
                let data = pattern(i, LEN);
                let writer = {
                    let (stream, data) = (stream.clone(), data.clone());
                    thread::spawn(move || {
                        (&*stream).write_all(&data).unwrap();
                        stream.shutdown(Shutdown::Write).unwrap();
                    })
                };
                let mut back = Vec::new();
                (&*stream).read_to_end(&mut back).unwrap();
                writer.join().unwrap();
                let expected: Vec<u8> = data.iter().map(|x| x ^ 0x5a).collect();
                assert!(
                    back == expected,
                    "connection {i}: {} bytes back",
                    back.len()
                );
                let stats = stream.stats().unwrap();
                assert_eq!(stats.mode, Mode::Mptcp);
                assert_eq!(stats.bytes_received, LEN as u64);
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    assert_eq!(server.join().unwrap(), CONNS as usize * LEN);
}

#[test]
fn shutdown_gives_eof_and_write_after_shutdown_fails() {
    let (a, b) = stacks(&[A1], &[B1]);
    let listener = MptcpListener::bind(&b, 5001).unwrap();
    let server = thread::spawn(move || {
        let (mut s, peer) = listener.accept().unwrap();
        guard(&s);
        assert_eq!(peer.ip(), A1);
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"hello");
        // Still at the end: read keeps returning 0.
        assert_eq!(s.read(&mut [0u8; 8]).unwrap(), 0);
        s.write_all(b"bye").unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        let err = s.write(b"more").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe, "{err}");
    });
    let mut c = MptcpStream::connect(&a, SocketAddr::new(B1, 5001)).unwrap();
    guard(&c);
    assert_eq!(c.peer_addr().unwrap(), SocketAddr::new(B1, 5001));
    assert_eq!(c.local_addr().unwrap().ip(), A1);
    c.write_all(b"hello").unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    let err = c.write(b"x").unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::BrokenPipe, "{err}");
    let mut got = Vec::new();
    c.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"bye");
    server.join().unwrap();
}

#[test]
fn errors_are_io_errors_of_the_right_kind() {
    let (a, b) = stacks(&[A1], &[B1]);
    // Nobody listens on the port: RST, ConnectionRefused.
    let err = MptcpStream::connect(&a, SocketAddr::new(B1, 4999)).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err}");
    // A source address the stack does not own.
    let err = ConnectOptions::new()
        .local_addr(A2)
        .connect(&a, SocketAddr::new(B1, 4999))
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::AddrNotAvailable, "{err}");
    // A port already bound on the stack.
    let listener = MptcpListener::bind(&b, 5002).unwrap();
    let err = MptcpListener::bind(&b, 5002).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
    // The peer aborts: reads and writes see ConnectionReset.
    let server = thread::spawn(move || {
        let (s, _) = listener.accept().unwrap();
        let mut buf = [0u8; 4];
        (&s).read_exact(&mut buf).unwrap();
        s.abort().unwrap();
        listener
    });
    let mut c = MptcpStream::connect(&a, SocketAddr::new(B1, 5002)).unwrap();
    guard(&c);
    c.write_all(b"ping").unwrap();
    let listener = server.join().unwrap();
    let err = c.read(&mut [0u8; 8]).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionReset, "{err}");
    let err = c.write(b"x").unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionReset, "{err}");
    // Non-blocking mode and timeouts: WouldBlock.
    listener.set_nonblocking(true).unwrap();
    assert_eq!(
        listener.accept().unwrap_err().kind(),
        io::ErrorKind::WouldBlock
    );
    drop(listener);
    // After the listener is gone its port refuses connections again.
    let err = MptcpStream::connect(&a, SocketAddr::new(B1, 5002)).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err}");
    let listener = MptcpListener::bind(&b, 5003).unwrap();
    let c = MptcpStream::connect(&a, SocketAddr::new(B1, 5003)).unwrap();
    let (s, _) = listener.accept().unwrap();
    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    assert_eq!(
        (&s).read(&mut [0u8; 8]).unwrap_err().kind(),
        io::ErrorKind::WouldBlock
    );
    c.set_nonblocking(true).unwrap();
    assert_eq!(
        (&c).read(&mut [0u8; 8]).unwrap_err().kind(),
        io::ErrorKind::WouldBlock
    );
    // Once the stack is gone, calls fail with NotConnected.
    drop(b);
    let err = s.stats().unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotConnected, "{err}");
}

#[test]
fn connect_times_out_when_the_link_drops_everything() {
    let (dev_a, dev_b) = MemoryDevice::pair(1500, 64);
    // The far end is gone: every packet is lost.
    drop(dev_b);
    let a = Stack::new(dev_a, StackConfig::new().address(A1).seed(3)).unwrap();
    let err = MptcpStream::connect_timeout(&a, SocketAddr::new(B1, 80), Duration::from_secs(2))
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
    a.shutdown().unwrap();
}

#[test]
fn transfer_survives_removing_a_path() {
    // More than the receive and send buffers (4 MB each) hold: the server reads nothing until
    // the path is gone, so the removal surely happens mid-transfer.
    const LEN: usize = 12_000_000;
    let (a, b) = stacks(&[A1, A2], &[B1, B2]);
    let listener = MptcpListener::bind(&b, 5004).unwrap();
    let (go, gate) = std::sync::mpsc::channel::<()>();
    let server = thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        guard(&s);
        gate.recv().unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        got
    });
    let stream = Arc::new(
        ConnectOptions::new()
            .scheduler(SchedulerKind::RoundRobin)
            .connect(&a, SocketAddr::new(B1, 5004))
            .unwrap(),
    );
    guard(&stream);
    // Wait (bounded) until a second subflow joined.
    let mut joined = false;
    for _ in 0..500 {
        let st = stream.stats().unwrap();
        if st.active_subflows().any(|s| s.local.ip() == A2) {
            joined = true;
            break;
        }
        thread::sleep(Duration::from_millis(10));
    }
    assert!(joined, "{:#?}", stream.stats().unwrap());
    let data = pattern(7, LEN);
    let writer = {
        let (stream, data) = (stream.clone(), data.clone());
        thread::spawn(move || {
            (&*stream).write_all(&data).unwrap();
            stream.shutdown(Shutdown::Write).unwrap();
        })
    };
    // Mid-transfer, once both paths carried data, the first path goes away.
    for _ in 0..1000 {
        let st = stream.stats().unwrap();
        if st
            .subflows
            .iter()
            .all(|s| s.bytes_acked > 0 || s.state == mptcp_stack::tcp::State::Closed)
            && st.bytes_sent > 0
            // Data waits in the send buffer (the server reads nothing yet): checked here too,
            // since between two writes everything written so far may be acknowledged.
            && st.send_queue > 0
        {
            break;
        }
        thread::sleep(Duration::from_millis(5));
    }
    let before = stream.stats().unwrap();
    a.remove_address(A1).unwrap();
    go.send(()).unwrap();
    assert!(before.send_queue > 0, "{before:#?}");
    writer.join().unwrap();
    let got = server.join().unwrap();
    assert_eq!(got.len(), LEN);
    assert!(got == data, "data differs after the path was removed");
    let st = stream.stats().unwrap();
    assert!(
        st.subflows
            .iter()
            .filter(|s| s.local.ip() == A1)
            .all(|s| s.state == mptcp_stack::tcp::State::Closed),
        "{st:#?}"
    );
    assert!(
        st.subflows
            .iter()
            .any(|s| s.local.ip() == A2 && s.bytes_acked > 0)
    );
}

#[test]
fn dropping_a_stream_closes_it_and_dropping_the_stack_wakes_readers() {
    let (a, b) = stacks(&[A1], &[B1]);
    let listener = MptcpListener::bind(&b, 5005).unwrap();
    let data = pattern(9, 100_000);
    {
        let mut c = MptcpStream::connect(&a, SocketAddr::new(B1, 5005)).unwrap();
        c.write_all(&data).unwrap();
        // Dropped without shutdown: the queued data still goes out, then a DATA_FIN.
    }
    let (mut s, _) = listener.accept().unwrap();
    guard(&s);
    let mut got = Vec::new();
    s.read_to_end(&mut got).unwrap();
    assert!(got == data, "{} bytes", got.len());

    // A reader blocked on a connection whose stack goes away gets an error, not a hang.
    let c = MptcpStream::connect(&a, SocketAddr::new(B1, 5005)).unwrap();
    let (s2, _) = listener.accept().unwrap();
    let reader = thread::spawn(move || (&c).read(&mut [0u8; 8]));
    thread::sleep(Duration::from_millis(50));
    drop(a);
    let err = reader.join().unwrap().unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotConnected, "{err}");
    // The peer saw the reset the stack sent on its way out.
    s2.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let err = (&s2).read(&mut [0u8; 8]).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionReset, "{err}");
}

/// A device that works until `armed` is set, then panics in `recv` (a stand-in for any bug on
/// the stack thread).
struct PanicsWhenArmed {
    inner: MemoryDevice,
    armed: Arc<std::sync::atomic::AtomicBool>,
}

impl mptcp_stack::driver::PacketDevice for PanicsWhenArmed {
    fn mtu(&self) -> usize {
        self.inner.mtu()
    }
    fn send(&mut self, now: mptcp_stack::node::Instant, packet: &[u8]) -> io::Result<()> {
        self.inner.send(now, packet)
    }
    fn recv(
        &mut self,
        now: mptcp_stack::node::Instant,
        buf: &mut [u8],
    ) -> io::Result<Option<usize>> {
        if self.armed.load(std::sync::atomic::Ordering::SeqCst) {
            panic!("deliberate panic on the stack thread (test)");
        }
        self.inner.recv(now, buf)
    }
    fn wait(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        let timeout = timeout.map_or(Duration::from_millis(5), |t| {
            t.min(Duration::from_millis(5))
        });
        self.inner.wait(Some(timeout))
    }
    fn waker(&self) -> mptcp_stack::driver::Waker {
        self.inner.waker()
    }
}

#[test]
fn a_panic_on_the_stack_thread_wakes_blocked_readers_and_accept_with_an_error() {
    let (dev_a, dev_b) = MemoryDevice::pair(1500, 512);
    let armed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let a = Stack::new(dev_a, StackConfig::new().address(A1).seed(1)).unwrap();
    let b = Stack::new(
        PanicsWhenArmed {
            inner: dev_b,
            armed: armed.clone(),
        },
        StackConfig::new().address(B1).seed(2),
    )
    .unwrap();
    let listener = MptcpListener::bind(&b, 7000).unwrap();
    let _client = MptcpStream::connect(&a, SocketAddr::new(B1, 7000)).unwrap();
    let (mut server_side, _) = listener.accept().unwrap();
    let reader = thread::spawn(move || {
        let mut buf = [0u8; 16];
        server_side.read(&mut buf)
    });
    let acceptor = thread::spawn(move || listener.accept().map(|_| ()));
    thread::sleep(Duration::from_millis(100));
    armed.store(true, std::sync::atomic::Ordering::SeqCst);
    // Nothing is sent, so no packet arrives: the stack thread still panics at its next
    // receive attempt (after the 5 ms wait), and both waiters must return.
    let read = reader.join().expect("the reader thread");
    assert!(read.is_err(), "read returned {read:?}");
    assert!(acceptor.join().expect("the acceptor thread").is_err());
    // Dropping the stack reports nothing to unwind into the application.
    drop(b);
}
