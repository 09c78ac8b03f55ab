//! A small, strict reader of the S3 XML documents the gateway must look
//! into (part lists from clients, ListParts pages from the backend): no
//! DOCTYPE, no entities but XML's own, bounded depth, one root element.

use quick_xml::events::Event;
use quick_xml::Reader;

use super::responses::error::{S3Error, S3ErrorCode};

/// Deepest element nesting accepted (S3's documents nest 3 deep).
const MAX_XML_DEPTH: usize = 8;

pub(crate) fn malformed(why: impl Into<String>) -> S3Error {
    S3Error::new(S3ErrorCode::MalformedXML, why)
}

/// Text beside a child element (`<Key>../x/<i/>y</Key>`,
/// `<Key><i>../x/</i>y</Key>`): readers differ on it (one keeps the text
/// after the last child only, another all of it), so a value checked here
/// could be another value at the backend. S3's documents have none.
fn refuse_mixed(text: &str) -> Result<(), S3Error> {
    if text.trim().is_empty() {
        Ok(())
    } else {
        Err(malformed("the XML mixes text and elements"))
    }
}

/// What [`walk`] visits; `path` names the element last.
pub(crate) enum Node<'a> {
    /// An element starts.
    Open(&'a [String]),
    /// An element ends, with its text (trimmed).
    Close(&'a [String], &'a str),
}

/// Visits every element of a document, validating it as it goes (no
/// DOCTYPE, no unknown entities, bounded depth).
pub(crate) fn walk(
    xml: &[u8],
    mut visit: impl FnMut(Node<'_>) -> Result<(), S3Error>,
) -> Result<(), S3Error> {
    let text = std::str::from_utf8(xml).map_err(|_| malformed("the XML is not UTF-8"))?;
    let mut reader = Reader::from_str(text);
    let mut path: Vec<String> = Vec::new();
    // Per open element: has it a child? (Its text must then be blank.)
    let mut parents: Vec<bool> = Vec::new();
    let mut value = String::new();
    let mut seen_root = false;
    loop {
        let event = reader
            .read_event()
            .map_err(|_| malformed("the XML is not well-formed"))?;
        match event {
            Event::Start(e) => {
                if path.is_empty() && seen_root {
                    return Err(malformed("the XML has more than one root element"));
                }
                refuse_mixed(&value)?;
                if let Some(has_child) = parents.last_mut() {
                    *has_child = true;
                }
                seen_root |= path.is_empty();
                if path.len() >= MAX_XML_DEPTH {
                    return Err(malformed("the XML nests too deeply"));
                }
                let name = std::str::from_utf8(e.local_name().as_ref())
                    .map_err(|_| malformed("an element name is not UTF-8"))?
                    .to_string();
                path.push(name);
                parents.push(false);
                value.clear();
                visit(Node::Open(&path))?;
            }
            Event::Empty(e) => {
                if path.is_empty() && seen_root {
                    return Err(malformed("the XML has more than one root element"));
                }
                refuse_mixed(&value)?;
                if let Some(has_child) = parents.last_mut() {
                    *has_child = true;
                }
                seen_root |= path.is_empty();
                let name = std::str::from_utf8(e.local_name().as_ref())
                    .map_err(|_| malformed("an element name is not UTF-8"))?
                    .to_string();
                path.push(name);
                visit(Node::Open(&path))?;
                visit(Node::Close(&path, ""))?;
                path.pop();
            }
            Event::Text(t) => {
                value.push_str(&t.decode().map_err(|_| malformed("bad text"))?);
            }
            Event::CData(t) => {
                value.push_str(&t.decode().map_err(|_| malformed("bad text"))?);
            }
            Event::GeneralRef(r) => {
                let c = match r.resolve_char_ref() {
                    Ok(Some(c)) => c,
                    Ok(None) => match r.as_ref() {
                        b"quot" => '"',
                        b"amp" => '&',
                        b"apos" => '\'',
                        b"lt" => '<',
                        b"gt" => '>',
                        _ => return Err(malformed("the XML uses an unknown entity")),
                    },
                    Err(_) => return Err(malformed("the XML has a bad character reference")),
                };
                value.push(c);
            }
            Event::End(_) => {
                if parents.pop() == Some(true) {
                    refuse_mixed(&value)?;
                }
                visit(Node::Close(&path, value.trim()))?;
                value.clear();
                path.pop();
            }
            Event::DocType(_) => return Err(malformed("the XML must not have a DOCTYPE")),
            Event::Eof => break,
            // Inside the document they would split a text in two, which
            // readers join or cut differently.
            Event::Comment(_) | Event::PI(_) if !path.is_empty() => {
                return Err(malformed(
                    "the XML has a comment or instruction inside an element",
                ))
            }
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) => {}
        }
    }
    if !path.is_empty() {
        return Err(malformed("the XML ends inside an element"));
    }
    Ok(())
}
