//! The process's limit on open files, and raising it.
//!
//! Every connection is a file descriptor, on each end. Many Linux systems
//! start processes with a soft limit of 1,024 open files (kept low for
//! programs that still use `select`), under a hard limit that is often far
//! higher; a server or a load generator then fails at its 1,025th socket
//! with "Too many open files". Go's runtime raises the soft limit to the
//! hard one when a program starts (since Go 1.19). fastwire's library
//! never changes a process-wide setting behind its user's back: a program
//! that wants the same calls [`raise_open_files_limit`] at the start of
//! `main`, as the `fastwire` tool and its examples do.

#![allow(unsafe_code)]

use std::io;

/// The limit on open files, as the kernel has it (`RLIMIT_NOFILE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenFiles {
    /// The limit in force: opening a file past it fails.
    pub soft: u64,
    /// The ceiling an unprivileged process may raise the soft limit to.
    pub hard: u64,
}

impl OpenFiles {
    /// Whether `needed` files fit under the soft limit, and if not, why, in
    /// words that name the limit and the command that raises it.
    pub fn fits(&self, needed: u64, what: &str) -> Result<(), String> {
        if needed <= self.soft {
            return Ok(());
        }
        Err(format!(
            "{what} needs about {needed} open files, over this process's limit of {} (hard limit {}): \
             raise it in the shell that starts the program (`ulimit -n {needed}`, or as root past the hard limit)",
            self.soft, self.hard
        ))
    }
}

/// The process's limit on open files.
#[cfg(unix)]
// `rlim_t` is 64 bits on some targets and 32 on others.
#[allow(clippy::unnecessary_cast)]
pub fn open_files_limit() -> io::Result<OpenFiles> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one rlimit into the struct it is handed.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(OpenFiles { soft: limit.rlim_cur as u64, hard: limit.rlim_max as u64 })
}

/// Raises the soft limit on open files to the hard limit, and returns the
/// limit before and after. A soft limit already at the hard one is left as
/// it is.
#[cfg(unix)]
pub fn raise_open_files_limit() -> io::Result<(OpenFiles, OpenFiles)> {
    let before = open_files_limit()?;
    if before.soft >= before.hard {
        return Ok((before, before));
    }
    let limit = libc::rlimit { rlim_cur: before.hard as libc::rlim_t, rlim_max: before.hard as libc::rlim_t };
    // SAFETY: setrlimit reads one rlimit from the struct it is handed.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((before, open_files_limit()?))
}

/// Where there is no such limit to read, an error that says so.
#[cfg(not(unix))]
pub fn open_files_limit() -> io::Result<OpenFiles> {
    Err(io::Error::new(io::ErrorKind::Unsupported, "no RLIMIT_NOFILE on this platform"))
}

/// Where there is no such limit to raise, an error that says so.
#[cfg(not(unix))]
pub fn raise_open_files_limit() -> io::Result<(OpenFiles, OpenFiles)> {
    Err(io::Error::new(io::ErrorKind::Unsupported, "no RLIMIT_NOFILE on this platform"))
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_is_raised_to_the_hard_one() {
        let (before, after) = raise_open_files_limit().unwrap();
        assert_eq!(after.soft, before.hard);
        assert_eq!(after.hard, before.hard);
        assert_eq!(open_files_limit().unwrap(), after);
    }

    #[test]
    fn a_need_over_the_limit_names_the_limit_and_the_command() {
        let limit = OpenFiles { soft: 1024, hard: 4096 };
        assert!(limit.fits(1000, "x").is_ok());
        let why = limit.fits(2100, "conns (1,000 connections)").unwrap_err();
        assert!(
            why.contains("limit of 1024") && why.contains("hard limit 4096") && why.contains("ulimit -n 2100"),
            "{why}"
        );
    }
}
