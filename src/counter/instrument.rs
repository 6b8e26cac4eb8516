//! TEMPORARY: stand-ins for the probe API while the probes are being written; replaced by
//! re-exports of `crate::probe` and `crate::metrics::red`.

pub mod red {
    use std::time::Duration;
    pub fn http_request(_route: &str, _method: &str, _status: u16, _elapsed: Duration) {}
    pub fn rpc_server(_method: &str, _code: &str, _elapsed: Duration) {}
    pub fn rpc_client(_method: &str, _code: &str, _elapsed: Duration) {}
    pub fn store_op(_backend: &str, _op: &str, _elapsed: Duration) {}
}

pub struct Mutex<T>(parking_lot::Mutex<T>);
impl<T> Mutex<T> {
    pub fn new(_name: &'static str, v: T) -> Self {
        Mutex(parking_lot::Mutex::new(v))
    }
    pub fn lock(&self) -> parking_lot::MutexGuard<'_, T> {
        self.0.lock()
    }
}

#[derive(Clone)]
pub struct PoolProbe(usize);
pub struct Acquiring;
pub struct InUse;
impl PoolProbe {
    pub fn new(_name: &'static str, max: usize) -> Self {
        PoolProbe(max)
    }
    pub fn acquire_started(&self) -> Acquiring {
        Acquiring
    }
    pub fn opened(&self, _took: std::time::Duration) {}
    pub fn closed(&self, _reason: &'static str) {}
    pub fn max_size(&self) -> usize {
        self.0
    }
}
impl Acquiring {
    pub fn acquired(self) -> InUse {
        InUse
    }
    pub fn failed(self) {}
    pub fn timed_out(self) {}
}

pub fn admin_router(_token: Option<String>) -> axum::Router {
    axum::Router::new()
}
