"""Where bdh-pl bends Lightning: every subclass of a Lightning class that changes what Lightning
does, with the reason. Lightning is pinned to one minor release (pyproject.toml);
tests/integration/training/test_glue.py lists every overridden method against Lightning's own signature,
so an upgrade that moves one fails there first.

cli.py            BDHLightningCLI(LightningCLI): no `predict`; model sized from the data; the
                  checkpoint read safely and its hyperparameters as the truth (_parse_ckpt_path);
                  one seed for data and dropout (_set_seed); the run's folder and loggers, the
                  checkpoint IO and last.ckpt set up in instantiate_trainer; refusals before fit
trainer.py        Trainer(L.Trainer): SIGTERM and Ctrl-C stop between optimizer steps only, so a
                  resumed run is exactly the uninterrupted one
checkpoint_io.py  AtomicCheckpointIO(TorchCheckpointIO): temp file in the same folder, fsync,
                  rename (Lightning's fsspec temp file in $TMPDIR can be torn by a kill);
                  LastCheckpoint(ModelCheckpoint): last.ckpt at every validation, at the end and
                  on SIGTERM, whatever the score
callbacks.py      PeakMemory, ValidateFinalStep, TestMetricsWriter (plain Callbacks: what
                  Lightning does not ship); Throughput(ThroughputMonitor): this project's
                  batches, FLOPs and whole-run tokens/s
console.py        StepRichProgressBar, StepTQDMProgressBar: the bar counts optimizer steps out of
                  max_steps (Lightning's counts batches of epochs); FlopsRichModelSummary,
                  FlopsModelSummary: no `Total FLOPs: 0` column, the FLOPs per batch instead
loggers.py        TensorBoard(TensorBoardLogger): the HParams table without a fake step-0 point;
                  CSVWriter(ExperimentWriter), CSV(CSVLogger): a full disk never costs a row
model_args.py     not Lightning's but jsonargparse's: its private
                  _typehints.discard_init_args_on_class_path_change wrapped so that a model swap
                  (`--model LlamaLM` after a BDH config) also drops the nested config fields the
                  new class lacks (jsonargparse drops unknown names at the top level only)

Elsewhere, kept beside what they serve: training/memory.py MicroBatchCounters(Callback) (a
resume with another micro-batch split moves Lightning's batch counters), data/datamodule.py
ContiguousSampler(UnrepeatedDistributedSampler) (a contiguous piece per rank, kept by
Lightning), bench/resolve.py's ParseOnly(BDHLightningCLI) (parse a config, build nothing).
"""
