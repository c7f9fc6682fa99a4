//! What the applier, the copy and compare need to know about a table on one node: its
//! quoted name, its columns with their SQL types, and its primary key; and the statements
//! built from them. Values always go in as text parameters cast to the column's type
//! (`$1::text::numeric`), so no value is ever part of the SQL text.

use std::collections::HashMap;

use tokio_postgres::GenericClient;

use super::sql;
use super::sqlfrag::quote_ident;

/// One table on one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableMeta {
    /// `"schema"."name"`, quoted by the server.
    pub quoted: String,
    /// Column names in order.
    pub columns: Vec<String>,
    /// SQL type of each column (same order), from `format_type`.
    pub types: Vec<String>,
    /// Primary key column names in key order.
    pub key: Vec<String>,
    by_name: HashMap<String, usize>,
}

impl TableMeta {
    /// A table described by hand (names unquoted, `quoted` as SQL would name it).
    pub fn new(quoted: &str, columns: &[&str], types: &[&str], key: &[&str]) -> TableMeta {
        let columns: Vec<String> = columns.iter().map(|c| c.to_string()).collect();
        TableMeta {
            quoted: quoted.to_string(),
            by_name: columns
                .iter()
                .enumerate()
                .map(|(i, n)| (n.clone(), i))
                .collect(),
            columns,
            types: types.iter().map(|t| t.to_string()).collect(),
            key: key.iter().map(|k| k.to_string()).collect(),
        }
    }

    /// Reads the table `key` (`schema.name`); `None` when there is no such table.
    pub async fn load<C: GenericClient>(
        c: &C,
        key: &str,
    ) -> Result<Option<TableMeta>, tokio_postgres::Error> {
        let rows = c.query(sql::COLUMNS, &[&key]).await?;
        let Some(first) = rows.first() else {
            return Ok(None);
        };
        let quoted: String = first.get(3);
        let mut columns = Vec::new();
        let mut types = Vec::new();
        let mut keyed: Vec<(i32, String)> = Vec::new();
        for r in &rows {
            let name: String = r.get(0);
            if let Some(pos) = r.get::<_, Option<i32>>(2) {
                keyed.push((pos, name.clone()));
            }
            columns.push(name);
            types.push(r.get(1));
        }
        keyed.sort();
        let by_name = columns
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), i))
            .collect();
        Ok(Some(TableMeta {
            quoted,
            columns,
            types,
            key: keyed.into_iter().map(|(_, n)| n).collect(),
            by_name,
        }))
    }

    /// The SQL type of a column, or an error naming the missing column.
    pub fn type_of(&self, col: &str) -> Result<&str, String> {
        self.by_name
            .get(col)
            .map(|&i| self.types[i].as_str())
            .ok_or_else(|| format!("table {} has no column {col:?} here", self.quoted))
    }

    fn param(&self, n: usize, col: &str) -> Result<String, String> {
        Ok(format!("${n}::text::{}", self.type_of(col)?))
    }

    /// `insert into T (a, b) values ($1::text::ta, $2::text::tb)`.
    pub fn insert_sql(&self, cols: &[&str]) -> Result<String, String> {
        let names: Vec<String> = cols.iter().map(|c| quote_ident(c)).collect();
        let params = cols
            .iter()
            .enumerate()
            .map(|(i, c)| self.param(i + 1, c))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(format!(
            "insert into {} ({}) values ({})",
            self.quoted,
            names.join(", "),
            params.join(", ")
        ))
    }

    /// `update T set a = $1… where k = $n…`.
    pub fn update_sql(&self, set: &[&str], key: &[&str]) -> Result<String, String> {
        let sets = set
            .iter()
            .enumerate()
            .map(|(i, c)| Ok(format!("{} = {}", quote_ident(c), self.param(i + 1, c)?)))
            .collect::<Result<Vec<String>, String>>()?;
        Ok(format!(
            "update {} set {} where {}",
            self.quoted,
            sets.join(", "),
            self.where_clause(key, set.len())?
        ))
    }

    /// `delete from T where k = $1…`.
    pub fn delete_sql(&self, key: &[&str]) -> Result<String, String> {
        Ok(format!(
            "delete from {} where {}",
            self.quoted,
            self.where_clause(key, 0)?
        ))
    }

    fn where_clause(&self, key: &[&str], offset: usize) -> Result<String, String> {
        if key.is_empty() {
            return Err(format!("no key columns to find a row of {}", self.quoted));
        }
        Ok(key
            .iter()
            .enumerate()
            .map(|(i, c)| {
                Ok(format!(
                    "{} = {}",
                    quote_ident(c),
                    self.param(offset + i + 1, c)?
                ))
            })
            .collect::<Result<Vec<String>, String>>()?
            .join(" and "))
    }

    /// The quoted column list, `a, "B"`.
    pub fn column_list(&self) -> String {
        self.columns
            .iter()
            .map(|c| quote_ident(c))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `row(a, "B")`: the row's text form in column order (checksums).
    pub fn row_expr(&self) -> String {
        format!("row({})", self.column_list())
    }

    /// The key columns as text, `k1::text, k2::text` (repair).
    pub fn key_text_list(&self) -> String {
        self.key
            .iter()
            .map(|c| format!("{}::text", quote_ident(c)))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> TableMeta {
        TableMeta::new(
            "public.t",
            &["id", "Note", "n"],
            &["integer", "text", "numeric(10,2)"],
            &["id"],
        )
    }

    #[test]
    fn builds_parameterised_statements() {
        let m = meta();
        assert_eq!(
            m.insert_sql(&["id", "Note"]).unwrap(),
            "insert into public.t (id, \"Note\") values ($1::text::integer, $2::text::text)"
        );
        assert_eq!(
            m.update_sql(&["n"], &["id"]).unwrap(),
            "update public.t set n = $1::text::numeric(10,2) where id = $2::text::integer"
        );
        assert_eq!(
            m.delete_sql(&["id"]).unwrap(),
            "delete from public.t where id = $1::text::integer"
        );
        assert!(m.insert_sql(&["nope"]).is_err());
        assert!(m.delete_sql(&[]).is_err());
    }
}
