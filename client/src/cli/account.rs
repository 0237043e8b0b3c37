//! `im register`, `login`, `logout`, `whoami`.

use std::io::{BufRead, Write};

use serde_json::json;

use super::output::{print_json, CliError, CliResult};
use super::Ctx;

/// The password from the flag or `IM_PASSWORD`, else one line from stdin.
fn password(given: Option<String>) -> CliResult<String> {
    if let Some(password) = given {
        return Ok(password);
    }
    eprint!("password: ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    let password = line.trim_end_matches(['\r', '\n']).to_string();
    if password.is_empty() {
        return Err(CliError::new("BAD_REQUEST", "a password is required"));
    }
    Ok(password)
}

/// `im register NAME`: prints the new user.
pub async fn register(ctx: &Ctx, name: &str, given: Option<String>) -> CliResult {
    let password = password(given)?;
    let user = ctx.rest()?.register(name, &password).await?;
    print_json(&user);
    Ok(())
}

/// `im login NAME`: saves the token; prints the session.
pub async fn login(ctx: &mut Ctx, name: &str, given: Option<String>) -> CliResult {
    let password = password(given)?;
    let session = ctx.rest()?.login(name, &password).await?;
    ctx.state.name = Some(session.user.name.clone());
    ctx.state.user_id = Some(session.user.id);
    ctx.state.token = Some(session.token.clone());
    ctx.save()?;
    print_json(&json!({
        "user": session.user,
        "token": session.token,
        "device_id": ctx.state.device_id,
    }));
    Ok(())
}

/// `im logout`: revokes the token on the server and forgets it.
pub async fn logout(ctx: &mut Ctx) -> CliResult {
    let result = ctx.authed()?.logout().await;
    // A token the server no longer knows is as good as logged out.
    if let Err(e) = result {
        if !matches!(e.code(), "UNAUTHENTICATED" | "TOKEN_REVOKED") {
            return Err(e.into());
        }
    }
    ctx.state.token = None;
    ctx.save()?;
    print_json(&json!({ "ok": true }));
    Ok(())
}

/// `im whoami`: the user the saved token belongs to.
pub async fn whoami(ctx: &Ctx) -> CliResult {
    let user = ctx.authed()?.me().await?;
    print_json(&json!({ "user": user, "device_id": ctx.state.device_id }));
    Ok(())
}
