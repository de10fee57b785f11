package io.github.awscdkneuronx.patterns.readiness;

import java.lang.reflect.Field;
import java.util.ArrayList;
import java.util.ConcurrentModificationException;
import java.util.List;
import java.util.Map;
import org.pytorch.serve.job.Job;
import org.pytorch.serve.wlm.BatchAggregator;
import org.pytorch.serve.wlm.Model;
import org.pytorch.serve.wlm.ModelManager;
import org.pytorch.serve.wlm.ModelVersionedRefs;
import org.pytorch.serve.wlm.WorkerState;
import org.pytorch.serve.wlm.WorkerThread;

/**
 * TorchServe 0.11.0's workers, as the TERM handler (DrainOnTerm) sees them: the only class that touches the model
 * server's internals, so that a JVM without them fails here and shuts down as before.
 *
 * <p>A worker holds a job from the moment its frontend thread takes it from the model's queue until its last answer
 * is handed to Netty: the jobs its BatchAggregator keeps (for continuous batching, across steps, until each is
 * answered). That map is private in 0.11.0 and read here through reflection; control commands (a model load) in it
 * are no client's and are not waited for.
 */
final class ModelWorkers {

  private static final long POLL_MILLIS = 100;
  /** Idle seen this many polls in a row: a job is in neither the queue nor the map for an instant when it moves. */
  private static final int IDLE_POLLS = 3;
  /** After the last job left the map, for its answer's bytes to leave Netty's event loop before it shuts down. */
  private static final long SETTLE_MILLIS = 500;

  /** The workers' jobs could not be read (logged once). */
  private static volatile boolean blind;

  private ModelWorkers() {}

  /**
   * Sends SIGTERM to every worker that has loaded a continuous-batching model: the library's handler drains on it
   * (runtime README, Draining on SIGTERM). A worker of a statically batched model is left alone: TorchServe's Python
   * worker has no TERM handler there and would die with its batch; its batch is waited for all the same.
   */
  static int forwardTerm() {
    int signalled = 0;
    for (Model model : models()) {
      if (!model.isContinuousBatching()) {
        continue;
      }
      for (WorkerThread worker : workers(model)) {
        if (worker.getState() == WorkerState.WORKER_MODEL_LOADED && worker.getPid() > 0) {
          boolean sent = ProcessHandle.of(worker.getPid()).map(ProcessHandle::destroy).orElse(false);
          signalled += sent ? 1 : 0;
        }
      }
    }
    return signalled;
  }

  /** Waits until no model has a queued job and no worker holds one, or until the deadline (System.nanoTime). */
  static boolean awaitIdle(long deadline) throws InterruptedException {
    int idlePolls = 0;
    while (System.nanoTime() < deadline) {
      idlePolls = idle() ? idlePolls + 1 : 0;
      if (idlePolls >= IDLE_POLLS) {
        Thread.sleep(SETTLE_MILLIS);
        return true;
      }
      Thread.sleep(POLL_MILLIS);
    }
    return false;
  }

  private static boolean idle() {
    for (Model model : models()) {
      if (model.getPendingRequestsInJobQueue() > 0) {
        return false;
      }
      for (WorkerThread worker : workers(model)) {
        if (holdsClientJob(worker)) {
          return false;
        }
      }
    }
    return true;
  }

  private static List<Model> models() {
    List<Model> models = new ArrayList<>();
    ModelManager manager = ModelManager.getInstance();
    if (manager == null) {
      return models; // TorchServe has not started its model manager yet: nothing to wait for
    }
    for (Map.Entry<String, ModelVersionedRefs> name : manager.getAllModels()) {
      for (Map.Entry<String, Model> version : name.getValue().getAllVersions()) {
        models.add(version.getValue());
      }
    }
    return models;
  }

  private static List<WorkerThread> workers(Model model) {
    return ModelManager.getInstance().getWorkers(model.getModelVersionName());
  }

  private static boolean holdsClientJob(WorkerThread worker) {
    try {
      Object aggregator = field(WorkerThread.class, "aggregator").get(worker);
      Map<?, ?> jobs = (Map<?, ?>) field(BatchAggregator.class, "jobs").get(aggregator);
      if (jobs == null) {
        return false;
      }
      for (Object job : jobs.values().toArray()) {
        if (!((Job) job).isControlCmd()) {
          return true;
        }
      }
      return false;
    } catch (ConcurrentModificationException e) {
      return true; // the frontend thread changed it meanwhile: it is busy
    } catch (ReflectiveOperationException | ClassCastException e) {
      // Not 0.11.0's fields: busy, so that the wait lasts its whole bound rather than cutting an answer.
      if (!blind) {
        blind = true;
        DrainOnTerm.log("cannot see the workers' jobs (" + e + "): waiting the whole bound");
      }
      return true;
    }
  }

  private static Field field(Class<?> owner, String name) throws NoSuchFieldException {
    Field field = owner.getDeclaredField(name);
    field.setAccessible(true);
    return field;
  }
}
