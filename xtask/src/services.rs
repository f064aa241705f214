//! The backing services the distributed-backend tests talk to: PostgreSQL
//! (127.0.0.1:5432, trust auth, database `test`) and Redis (127.0.0.1:6379).
//! If one is not answering, start it with the machine's own command, then
//! wait for it; fail with a clear message if it still does not answer.

use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::Result;

struct Service {
    name: &'static str,
    port: u16,
    /// Shell command that starts it on the project's machines.
    start: &'static str,
}

const SERVICES: &[Service] = &[
    Service {
        name: "PostgreSQL",
        port: 5432,
        start: "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
    },
    Service {
        name: "Redis",
        port: 6379,
        start: "redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save '' \
                --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log",
    },
];

fn answers(port: u16) -> bool {
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&address, Duration::from_millis(500)).is_ok()
}

/// Makes sure every service answers, starting the ones that do not.
pub fn ensure() -> Result {
    for service in SERVICES {
        if answers(service.port) {
            continue;
        }
        eprintln!(
            "xtask: {} is not answering on 127.0.0.1:{}; starting it",
            service.name, service.port
        );
        let _ = Command::new("sh").args(["-c", service.start]).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !answers(service.port) {
            if Instant::now() > deadline {
                return Err(format!(
                    "{} is not running on 127.0.0.1:{} and `{}` did not start it; \
                     the tests of the distributed backends need it",
                    service.name, service.port, service.start
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    Ok(())
}
