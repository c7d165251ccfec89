//! `instavm server` flags for metering and credits (docs/billing.md).

use clap::Args;
use instavm_server::BillingSettings;
use std::time::Duration;

#[derive(Args, Debug)]
pub struct BillingArgs {
    /// Seconds between metering samples of every live VM's cgroup counters.
    #[arg(
        long = "metering-interval",
        env = "INSTAVM_METERING_INTERVAL",
        default_value_t = 15.0
    )]
    pub metering_interval: f64,
    /// Dollars per CPU-second (one core for one second).
    #[arg(long = "cpu-rate", env = "INSTAVM_CPU_RATE", default_value_t = BillingSettings::default().cpu_rate_per_core_second)]
    pub cpu_rate: f64,
    /// Dollars per GiB of memory held for one second.
    #[arg(long = "ram-rate", env = "INSTAVM_RAM_RATE", default_value_t = BillingSettings::default().ram_rate_per_gib_second)]
    pub ram_rate: f64,
    /// Monthly dollars of users the admin API gave no allocation.
    #[arg(long = "default-credit-dollars", env = "INSTAVM_DEFAULT_CREDIT_DOLLARS", default_value_t = BillingSettings::default().default_dollars)]
    pub default_dollars: f64,
    /// Refuse new VMs (403) to users whose month's usage reached their allocation.
    #[arg(long = "enforce-credits", env = "INSTAVM_ENFORCE_CREDITS")]
    pub enforce_credits: bool,
}

impl BillingArgs {
    pub fn settings(&self) -> BillingSettings {
        BillingSettings {
            sample_interval: Duration::from_secs_f64(self.metering_interval.clamp(0.2, 3600.0)),
            cpu_rate_per_core_second: self.cpu_rate.max(0.0),
            ram_rate_per_gib_second: self.ram_rate.max(0.0),
            default_dollars: self.default_dollars.max(0.0),
            enforce: self.enforce_credits,
            ..BillingSettings::default()
        }
    }
}
