//! errno numbers <-> names for x86_64/arm64 Linux (asm-generic numbering), so the host can report and
//! compare symbolic errnos without depending on the guest's libc.

const TABLE: &[(i32, &str)] = &[
    (1, "EPERM"),
    (2, "ENOENT"),
    (3, "ESRCH"),
    (4, "EINTR"),
    (5, "EIO"),
    (6, "ENXIO"),
    (7, "E2BIG"),
    (8, "ENOEXEC"),
    (9, "EBADF"),
    (10, "ECHILD"),
    (11, "EAGAIN"),
    (12, "ENOMEM"),
    (13, "EACCES"),
    (14, "EFAULT"),
    (16, "EBUSY"),
    (17, "EEXIST"),
    (18, "EXDEV"),
    (19, "ENODEV"),
    (20, "ENOTDIR"),
    (21, "EISDIR"),
    (22, "EINVAL"),
    (23, "ENFILE"),
    (24, "EMFILE"),
    (25, "ENOTTY"),
    (26, "ETXTBSY"),
    (27, "EFBIG"),
    (28, "ENOSPC"),
    (29, "ESPIPE"),
    (30, "EROFS"),
    (32, "EPIPE"),
    (34, "ERANGE"),
    (36, "ENAMETOOLONG"),
    (38, "ENOSYS"),
    (61, "ENODATA"),
    (75, "EOVERFLOW"),
    (95, "EOPNOTSUPP"),
    (99, "EADDRNOTAVAIL"),
    (110, "ETIMEDOUT"),
];

pub fn errno_name(errno: i32) -> &'static str {
    TABLE
        .iter()
        .find(|(n, _)| *n == errno)
        .map(|(_, s)| *s)
        .unwrap_or("EUNKNOWN")
}

pub fn errno_value(name: &str) -> Option<i32> {
    TABLE.iter().find(|(_, s)| *s == name).map(|(n, _)| *n)
}
