//! The C convention, once: a negative return means "see errno".

use std::io;

/// A system call's return value: `int`, `long` or `ssize_t`.
pub trait ReturnValue: Copy {
    fn failed(self) -> bool;
}

macro_rules! return_value {
    ($($t:ty),*) => {$(
        impl ReturnValue for $t {
            fn failed(self) -> bool {
                self < 0
            }
        }
    )*};
}

return_value!(i32, i64, isize);

/// `Ok(rc)` unless `rc` is negative, in which case errno, read at once.
pub fn check<T: ReturnValue>(rc: T) -> io::Result<T> {
    if rc.failed() {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negative_is_errno_and_the_rest_passes_through() {
        assert_eq!(check(5isize).unwrap(), 5);
        assert_eq!(check(0i32).unwrap(), 0);
        // A failed open leaves ENOENT in errno, as a failed call would.
        let rc = std::fs::File::open("/nonexistent/barrierd")
            .map(|_| 0)
            .unwrap_or(-1);
        let error = check(rc).unwrap_err();
        assert_eq!(error.raw_os_error(), Some(libc::ENOENT));
    }
}
