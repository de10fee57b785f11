// One jsii submodule per model.
export * as calm3chat22b from './calm3chat22b';
