//! The `core` functions for file-system lookups configs and layers make (`realdir`, `readdir`, sizes, symlinks, file types).
//!
//! Owns: these rows of the API table (see `api.rs`). Must not touch: the poll loop, Lua
//! state beyond the values of one call.

use super::prelude::*;

/// This area's `(name, function)` rows.
pub(super) fn rows(lua: &Lua) -> mlua::Result<Vec<Row>> {
    Ok(vec![
        ("realdir", lua.create_function(realdir)?),
        ("readdir", lua.create_function(readdir)?),
        ("fileSize", lua.create_function(file_size)?),
        ("isSymlink", lua.create_function(is_symlink)?),
        ("fileType", lua.create_function(file_type)?),
    ])
}

/// The absolute path of a directory with a trailing `/`; `nil` for anything else (with a
/// reason when the path exists but is no directory).
fn realdir(lua: &Lua, p: Value) -> mlua::Result<(Value, Option<String>)> {
    let Some(p) = bytes_of(&p) else {
        return Ok((Value::Nil, None));
    };
    match std::fs::canonicalize(OsStr::from_bytes(&p)) {
        Ok(abs) => match std::fs::metadata(&abs) {
            Ok(m) if m.is_dir() => {
                let mut b = abs.into_os_string().into_vec();
                if !b.ends_with(b"/") {
                    b.push(b'/');
                }
                Ok((Value::String(lua.create_string(&b)?), None))
            }
            _ => Ok((Value::Nil, Some("is not a directory".to_string()))),
        },
        Err(_) => Ok((Value::Nil, None)),
    }
}

/// The entries of a directory, name → is a directory; `nil` (logged) if it cannot be read.
fn readdir(lua: &Lua, p: mlua::String) -> mlua::Result<Value> {
    let path = OsStr::from_bytes(&p.as_bytes()).to_os_string();
    let Ok(rd) = std::fs::read_dir(&path) else {
        log::error([b"cannot open dir [".as_slice(), path.as_bytes(), b"]."].concat());
        return Ok(Value::Nil);
    };
    let t = lua.create_table()?;
    for e in rd.flatten() {
        let is_dir = e.file_type().map(|t| t.is_dir()).unwrap_or(false);
        t.set(lua.create_string(e.file_name().as_bytes())?, is_dir)?;
    }
    Ok(Value::Table(t))
}

/// The size of a file (following links); `nil` if it cannot be read.
fn file_size(_: &Lua, p: mlua::String) -> mlua::Result<Option<i64>> {
    let meta = std::fs::metadata(OsStr::from_bytes(&p.as_bytes()));
    Ok(meta.ok().map(|m| m.len() as i64))
}

fn is_symlink(_: &Lua, p: mlua::String) -> mlua::Result<bool> {
    Ok(std::fs::symlink_metadata(OsStr::from_bytes(&p.as_bytes())).is_ok_and(|m| m.is_symlink()))
}

/// The kind of a path without following links; `nil` if it does not exist.
fn file_type(_: &Lua, p: mlua::String) -> mlua::Result<Option<&'static str>> {
    use std::os::unix::fs::FileTypeExt;
    let Ok(m) = std::fs::symlink_metadata(OsStr::from_bytes(&p.as_bytes())) else {
        return Ok(None);
    };
    let t = m.file_type();
    let kinds = [
        (t.is_file(), "file"),
        (t.is_dir(), "directory"),
        (t.is_symlink(), "symlink"),
        (t.is_fifo(), "fifo"),
        (t.is_socket(), "socket"),
        (t.is_char_device(), "char"),
        (t.is_block_device(), "block"),
    ];
    Ok(kinds.into_iter().find(|k| k.0).map(|k| k.1))
}
