//! The load tester's response reader: whatever a server answers (then closing the
//! connection), the exchange ends with a status and a body count or an error, never a
//! panic or a hang.
#![no_main]

use std::io::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};

use dockhand_loadtest::fuzzing::{Encoded, Stream, Wire};
use libfuzzer_sys::fuzz_target;

struct Server {
    addr: SocketAddr,
    answers: Mutex<mpsc::Sender<Vec<u8>>>,
}

/// One server thread for the whole run: each connection gets the next answer, then a close.
fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("address");
        let (tx, rx) = mpsc::channel::<Vec<u8>>();
        std::thread::spawn(move || {
            for answer in rx {
                let Ok((mut stream, _)) = listener.accept() else {
                    return;
                };
                let _ = stream.write_all(&answer);
            }
        });
        Server {
            addr,
            answers: Mutex::new(tx),
        }
    })
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    })
}

fuzz_target!(|data: &[u8]| {
    let (head, answer) = match data.split_first() {
        Some((flag, rest)) => (flag & 1 == 1, rest.to_vec()),
        None => (false, Vec::new()),
    };
    let server = server();
    server.answers.lock().unwrap().send(answer).unwrap();
    let method = if head { http::Method::HEAD } else { http::Method::GET };
    let uri: http::Uri = "/".parse().unwrap();
    let request = Encoded::new(&method, &uri, &http::HeaderMap::new(), b"");
    runtime().block_on(async {
        let tcp = tokio::net::TcpStream::connect(server.addr).await.expect("connect");
        let mut wire = Wire::new(Stream::Plain(tcp));
        let answer = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            wire.exchange(&request),
        )
        .await
        .expect("the exchange ends when the server closes");
        if let Ok((status, _)) = answer {
            assert!((100..=999).contains(&status), "status {status}");
        }
    });
});
