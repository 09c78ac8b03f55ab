//! Plan stage, second half: the plan `sealgate_filters::plan` decided,
//! turned into the operation state the later stages use (the bucket's
//! encryption moved to the stage that needs it).

use pingora::http::RequestHeader;
use sealgate_filters::plan::Plan;
use sealgate_filters::policy::BucketEncryption;
use sealgate_filters::s3::S3Error;

use super::multipart::{complete_plan, Create};
use super::read_target::ReadPlan;
use super::upload::{client_checksum, Upload, UploadPlan};
use super::{attributes, copy, part_copy, Ctx, Gateway, Op};

impl Gateway {
    /// The plan with the state its stages need; fills the audit record.
    pub(super) fn op_for(
        &self,
        plan: Plan,
        encryption: Option<BucketEncryption>,
        req: &RequestHeader,
        identity: &sealgate_filters::auth::Identity,
        ctx: &mut Ctx,
    ) -> Result<Op, S3Error> {
        ctx.audit.policy =
            encryption
                .as_ref()
                .map(|e| if e.mandatory { "mandatory" } else { "optional" });
        let token = || {
            ctx.route
                .upload_token
                .clone()
                .expect("the plan checked the token")
        };
        // Every plan uses the bucket's encryption at most once: moved, not
        // cloned, on the way to its stage.
        let mut encryption = encryption;
        let mut enc = || {
            encryption
                .take()
                .expect("the plan checked the bucket's policy")
        };
        Ok(match plan {
            Plan::PassThrough => Op::PassThrough,
            Plan::DecodeOnly(body) => Op::Upload(Upload::Ready(UploadPlan::decode_only(body))),
            Plan::Put { body, key_id } => {
                ctx.live
                    .check_size(sealgate_envelope::ciphertext_len(body.plaintext_len))?;
                Op::Upload(Upload::Put {
                    body,
                    key_id,
                    enc: enc(),
                    echo: client_checksum(&req.headers),
                })
            }
            Plan::Part { body, number } => {
                ctx.live
                    .check_size(sealgate_envelope::multipart::stored_part_len(
                        body.plaintext_len,
                    ))?;
                Op::Upload(Upload::Part {
                    body,
                    number,
                    token: Box::new(token()),
                    enc: enc(),
                    echo: client_checksum(&req.headers),
                })
            }
            Plan::CreateMultipart { key_id, checksum } => Op::Create(Create::Pending {
                key_id,
                checksum,
                enc: enc(),
            }),
            Plan::Complete => Op::Complete(Box::new(complete_plan(req, identity, token())?)),
            Plan::ListParts => Op::ListParts,
            Plan::Read(r) => Op::Read(ReadPlan::new(r, ctx.live.read_binding(encryption.take()))),
            Plan::Attributes { mandatory } => {
                Op::Attributes(Box::new(attributes::AttributesPlan::new(
                    mandatory,
                    ctx.live.read_binding(encryption.take()),
                )))
            }
            Plan::Listing => Op::Listing,
            Plan::ListUploads => Op::ListUploads(Default::default()),
            Plan::ListBuckets => Op::ListBuckets(identity.grants()),
            Plan::Copy { key_id, replace } => Op::Copy(Box::new(copy::CopyObject {
                key_id,
                replace,
                enc: enc(),
                server_side: None,
                source: None,
            })),
            Plan::PartCopy { number, range } => Op::PartCopy(Box::new(part_copy::PartCopy {
                number,
                range,
                token: Box::new(token()),
                enc: enc(),
            })),
        })
    }
}
