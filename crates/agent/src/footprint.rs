//! The agent's resident memory once it has settled.
//!
//! Start-up runs much code exactly once (the configuration's parser, the state database's
//! migrations, TLS set-up, the first deploy), and the kernel maps the executable's pages
//! around every page it faults in. Those pages stay mapped, and counted in the agent's
//! resident set, until memory runs short: on an idle agent, most of its RSS is code it will
//! not run again. So once the agent has settled it gives them back — `MADV_PAGEOUT` on the
//! read-only mappings of its own executable. They are clean pages of the file: nothing is
//! written, and the code the running agent keeps using faults back in. The kernel leaves
//! pages another process maps too (a `dockhand` command running at that moment) alone.

use std::path::Path;
use std::time::Duration;

/// How long after start the agent's start-up code is given back.
pub const SETTLE: Duration = Duration::from_secs(10);

/// The start and length of each read-only (code and constant data) mapping of `exe` in a
/// `/proc/PID/maps` listing.
pub fn code_mappings(maps: &str, exe: &Path) -> Vec<(usize, usize)> {
    maps.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let range = fields.next()?;
            let perms = fields.next()?;
            // offset, device, inode, then the path (which may hold spaces).
            let path = line.splitn(6, char::is_whitespace).nth(5).map(str::trim)?;
            if Path::new(path) != exe || perms.as_bytes().get(1) != Some(&b'-') {
                return None;
            }
            let (start, end) = range.split_once('-')?;
            let start = usize::from_str_radix(start, 16).ok()?;
            let end = usize::from_str_radix(end, 16).ok()?;
            (end > start).then_some((start, end - start))
        })
        .collect()
}

/// Gives back the resident pages of this process's own executable (see the module's
/// comment); the bytes of mappings advised. Errors (an old kernel without `MADV_PAGEOUT`)
/// change nothing.
pub fn release_code_pages() -> std::io::Result<usize> {
    let exe = std::fs::read_link("/proc/self/exe")?;
    let maps = std::fs::read_to_string("/proc/self/maps")?;
    let mut advised = 0;
    for (start, len) in code_mappings(&maps, &exe) {
        let Some(addr) = std::ptr::NonNull::new(start as *mut std::ffi::c_void) else {
            continue;
        };
        // SAFETY: the range is a whole read-only mapping of this process's executable, as
        // the kernel lists it; MADV_PAGEOUT only drops clean file pages from memory (they are
        // read again from the file when used), so no memory the program holds changes.
        #[allow(unsafe_code)]
        unsafe { nix::sys::mman::madvise(addr, len, nix::sys::mman::MmapAdvise::MADV_PAGEOUT) }
            .map_err(std::io::Error::from)?;
        advised += len;
    }
    Ok(advised)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_executables_read_only_mappings_are_taken() {
        let maps = "\
55d0c0000000-55d0c0200000 r--p 00000000 fd:01 123 /usr/bin/dockhand
55d0c0200000-55d0c1400000 r-xp 00200000 fd:01 123 /usr/bin/dockhand
55d0c1400000-55d0c1500000 r--p 01400000 fd:01 123 /usr/bin/dockhand
55d0c1500000-55d0c1510000 rw-p 01500000 fd:01 123 /usr/bin/dockhand
55d0c2000000-55d0c2100000 rw-p 00000000 00:00 0 [heap]
7f0000000000-7f0000100000 r-xp 00000000 fd:01 456 /usr/lib/x86_64-linux-gnu/libc.so.6
7f0000200000-7f0000300000 r-xp 00000000 fd:01 789 /usr/bin/dockhand-old (deleted)
";
        assert_eq!(
            code_mappings(maps, Path::new("/usr/bin/dockhand")),
            vec![
                (0x55d0c0000000, 0x200000),
                (0x55d0c0200000, 0x1200000),
                (0x55d0c1400000, 0x100000)
            ]
        );
    }

    #[test]
    fn this_test_binary_gives_its_code_back_and_keeps_running() {
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        assert!(
            !code_mappings(&maps, &exe).is_empty(),
            "the running binary's code is mapped from {}",
            exe.display()
        );
        // The kernel takes the advice for every mapping (an error would say it did not).
        let advised = release_code_pages().unwrap();
        let mapped: usize = code_mappings(&maps, &exe).iter().map(|(_, len)| len).sum();
        assert_eq!(advised, mapped);
    }
}
