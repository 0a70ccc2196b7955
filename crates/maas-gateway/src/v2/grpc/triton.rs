//! Triton's model configuration and statistics ([`crate::v2::triton`]) and the repository
//! index ([`crate::v2::repository`]) as the protobuf messages of the gRPC `ModelConfig`,
//! `ModelStatistics` and `RepositoryIndex` calls.

use super::proto::model_input::Format;
use super::proto::model_instance_group::Kind;
use super::proto::repository_index_response::ModelIndex;
use super::proto::{
    InferBatchStatistics, InferStatistics, ModelConfig, ModelDynamicBatching, ModelInput, ModelInstanceGroup,
    ModelOutput, ModelStatistics, ModelStatisticsResponse, StatisticDuration,
};
use crate::v2::repository::RepositoryIndexEntry;
use crate::v2::triton::{self, ConfigTensor, InstanceKind, StatDuration, triton_type};

pub fn config(c: triton::ModelConfig) -> ModelConfig {
    let input = |t: ConfigTensor| ModelInput {
        data_type: triton_type(t.data_type).1,
        name: t.name,
        format: Format::None as i32,
        dims: t.dims,
    };
    let output = |t: ConfigTensor| ModelOutput { data_type: triton_type(t.data_type).1, name: t.name, dims: t.dims };
    ModelConfig {
        name: c.name,
        platform: c.platform.to_owned(),
        backend: c.backend.to_owned(),
        max_batch_size: c.max_batch_size,
        input: c.input.into_iter().map(input).collect(),
        output: c.output.into_iter().map(output).collect(),
        instance_group: c
            .instance_group
            .into_iter()
            .map(|g| ModelInstanceGroup {
                name: g.name,
                count: g.count,
                kind: match g.kind {
                    InstanceKind::Cpu => Kind::Cpu,
                    InstanceKind::Gpu => Kind::Gpu,
                } as i32,
            })
            .collect(),
        dynamic_batching: c.dynamic_batching.map(|b| ModelDynamicBatching {
            preferred_batch_size: b.preferred_batch_size,
            max_queue_delay_microseconds: b.max_queue_delay_microseconds,
        }),
    }
}

fn duration(d: StatDuration) -> Option<StatisticDuration> {
    Some(StatisticDuration { count: d.count, ns: d.ns })
}

pub fn stats(list: triton::StatsList) -> ModelStatisticsResponse {
    let model = |m: triton::ModelStats| {
        let s = m.inference_stats;
        ModelStatistics {
            name: m.name,
            version: m.version,
            last_inference: m.last_inference,
            inference_count: m.inference_count,
            execution_count: m.execution_count,
            inference_stats: Some(InferStatistics {
                success: duration(s.success),
                fail: duration(s.fail),
                queue: duration(s.queue),
                compute_input: duration(s.compute_input),
                compute_infer: duration(s.compute_infer),
                compute_output: duration(s.compute_output),
                cache_hit: duration(s.cache_hit),
                cache_miss: duration(s.cache_miss),
            }),
            batch_stats: m
                .batch_stats
                .into_iter()
                .map(|b| InferBatchStatistics {
                    batch_size: b.batch_size,
                    compute_input: duration(b.compute_input),
                    compute_infer: duration(b.compute_infer),
                    compute_output: duration(b.compute_output),
                })
                .collect(),
        }
    };
    ModelStatisticsResponse { model_stats: list.model_stats.into_iter().map(model).collect() }
}

pub fn index_entry(e: RepositoryIndexEntry) -> ModelIndex {
    ModelIndex { name: e.name, version: e.version, state: e.state.to_owned(), reason: e.reason }
}
