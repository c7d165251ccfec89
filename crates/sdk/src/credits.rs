//! Credits and billing (spec §19) and the usage breakdown with dates (§20.2). The answers are
//! JSON objects (arrays for usage rows) returned as they are.

use crate::*;
use serde_json::Value;

impl Client {
    async fn credits(&self, tail: &[&str], query: &[(&str, String)]) -> Result<Value> {
        let mut segments = vec!["v1", "credits"];
        segments.extend_from_slice(tail);
        let http = self.request(Method::GET, &segments)?;
        self.send(http.query(query)).await
    }

    pub async fn credits_allocation(&self) -> Result<Value> {
        self.credits(&["allocation"], &[]).await
    }

    pub async fn credits_summary(&self, period: &str) -> Result<Value> {
        self.credits(&["summary"], &[("period", period.to_owned())])
            .await
    }

    pub async fn credits_usage(
        &self,
        period: &str,
        usage_type: Option<&str>,
        limit: u32,
    ) -> Result<Value> {
        let mut q = vec![("period", period.to_owned()), ("limit", limit.to_string())];
        if let Some(t) = usage_type {
            q.push(("usage_type", t.to_owned()));
        }
        self.credits(&["usage"], &q).await
    }

    pub async fn credits_check(&self, usage_type: &str, required: i64) -> Result<Value> {
        self.credits(
            &["check"],
            &[
                ("usage_type", usage_type.to_owned()),
                ("required_credits", required.to_string()),
            ],
        )
        .await
    }

    pub async fn credits_rates(&self) -> Result<Value> {
        self.credits(&["rates"], &[]).await
    }

    pub async fn credits_trends(&self, period: &str, granularity: &str) -> Result<Value> {
        self.credits(
            &["usage", "trends"],
            &[
                ("period", period.to_owned()),
                ("granularity", granularity.to_owned()),
            ],
        )
        .await
    }

    pub async fn credits_forecast(&self) -> Result<Value> {
        self.credits(&["usage", "forecasting"], &[]).await
    }

    /// `GET /v1/users/me/usage-breakdown` with optional ISO dates.
    pub async fn usage_breakdown_between(
        &self,
        days: u32,
        start_date: Option<&str>,
        end_date: Option<&str>,
    ) -> Result<UsageBreakdown> {
        let mut q = vec![("days", days.to_string())];
        if let Some(s) = start_date {
            q.push(("start_date", s.to_owned()));
        }
        if let Some(e) = end_date {
            q.push(("end_date", e.to_owned()));
        }
        let http = self.request(Method::GET, &["v1", "users", "me", "usage-breakdown"])?;
        self.send(http.query(&q)).await
    }
}
