//! Roles: which statements a caller may run.
//!
//! A statement is classified from its parse ([`weir_query::WeirStatement`],
//! read once with the session's dialect) *before* the engine runs it —
//! the engine executes DDL while planning, so checking the planned
//! `LogicalPlan` would be too late — and the engine then runs that same
//! parse, so the check always sees the statement that runs (issue 24: a
//! separate parse with another dialect let a read user DROP tables).
//! The classes are [`Access::Read`], [`Access::Write`] and [`Access::Admin`]
//! (see `weir_query::Access`); SQL that does not parse is refused to
//! everyone with its syntax error.

use tonic::Status;
use weir_query::{QueryEngine, WeirStatement};

pub use weir_query::Access;

use crate::auth::Principal;
use crate::error::{ErrorKind, error_status, status_from};
use crate::users::Role;

fn required_role(access: Access) -> Role {
    match access {
        Access::Read => Role::Read,
        Access::Write => Role::Write,
        Access::Admin => Role::Admin,
    }
}

/// PERMISSION_DENIED unless `principal`'s role allows `access`.
pub fn permit(principal: &Principal, access: Access) -> Result<(), Status> {
    let needed = required_role(access);
    if principal.role >= needed {
        return Ok(());
    }
    tracing::info!(user = %principal.name, role = %principal.role, ?access, "Flight SQL: permission denied");
    Err(error_status(
        ErrorKind::PermissionDenied,
        format!(
            "user `{}` has role {} and may not run {}: role {} is needed",
            principal.name,
            principal.role,
            access.describe(),
            needed
        ),
    ))
}

/// Parses `sql` with the session's dialect and checks that `principal` may
/// run it; the statement returned is what the engine must run.
pub fn permit_sql(
    principal: &Principal,
    ctx: &datafusion::prelude::SessionContext,
    sql: &str,
) -> Result<WeirStatement, Status> {
    let statement = WeirStatement::parse(ctx, sql).map_err(status_from)?;
    permit(principal, statement.access())?;
    Ok(statement)
}

/// The access `sql` needs under the engine's default session (generic
/// dialect), or the parse error.
pub fn classify(engine: &QueryEngine, sql: &str) -> Result<Access, weir_query::QueryError> {
    WeirStatement::parse(&engine.new_context(), sql).map(|s| s.access())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_include_lower_ones() {
        let who = |role| Principal {
            name: "u".into(),
            role,
        };
        let ctx = datafusion::prelude::SessionContext::new();
        assert!(permit(&who(Role::Read), Access::Read).is_ok());
        let denied = permit(&who(Role::Read), Access::Write).unwrap_err();
        assert_eq!(denied.code(), tonic::Code::PermissionDenied);
        assert!(
            denied.message().contains("role write is needed"),
            "{denied}"
        );
        assert!(permit(&who(Role::Write), Access::Write).is_ok());
        assert!(permit(&who(Role::Write), Access::Admin).is_err());
        assert!(permit_sql(&who(Role::Admin), &ctx, "DROP TABLE t").is_ok());
        assert!(permit_sql(&who(Role::Write), &ctx, "DROP TABLE t").is_err());
        assert!(permit_sql(&who(Role::Write), &ctx, "INSERT INTO t VALUES (1)").is_ok());
        let syntax = permit_sql(&who(Role::Admin), &ctx, "SELEC 1").unwrap_err();
        assert_eq!(syntax.code(), tonic::Code::InvalidArgument);
    }
}
