package io.github.awscdkneuronx.patterns.readiness;

import java.lang.reflect.InvocationHandler;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.lang.reflect.Proxy;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;

/**
 * The JVM's answer to SIGTERM, replaced by one that drains TorchServe before it stops.
 *
 * <p>SageMaker stops a container with SIGTERM and kills it 30 s later; the toolkit's {@code serve} forwards the
 * SIGTERM to TorchServe's JVM and nothing else. The JVM's own TERM handler starts its shutdown hooks at once, and
 * TorchServe 0.11.0's hook (ModelServer.stop) shuts its Netty event loops down, which closes every client connection,
 * answered or not; the workers are then killed (WorkerLifeCycle.exit, destroyForcibly).
 *
 * <p>In its place, on the first SIGTERM: the workers that have loaded their model are sent SIGTERM (the library's
 * handler then refuses what waits and whatever comes with 503 and Retry-After, and ends what runs within its own
 * grace with finish_reason "length"), the listeners stay open so those answers and refusals reach their clients, and
 * once no worker holds a job (or after {@link #WAIT_SECONDS}) the JVM's own handler runs: the usual shutdown. A
 * second SIGTERM changes nothing.
 *
 * <p>The JDK has no public API for signal handlers; {@code sun.misc.Signal} (module jdk.unsupported, in every JDK
 * since 9) is used through reflection, because javac reports any direct use as a warning that no annotation can
 * suppress, and the build treats warnings as errors. Without it the JVM keeps its own handler.
 */
public final class DrainOnTerm {

  /**
   * How long the JVM waits for its workers, from the signal: SageMaker kills the container 30 s after its SIGTERM,
   * and TorchServe's own shutdown needs the rest. The same figure as contract.json endpoint.draining
   * frontendWaitSeconds (the runtime tests compare them).
   */
  static final long WAIT_SECONDS = 25;

  /** The exit status of a JVM ended by SIGTERM (128 + 15), used when the JVM had no handler of its own to call. */
  private static final int TERM_STATUS = 143;

  private static final AtomicBoolean DRAINING = new AtomicBoolean();

  private DrainOnTerm() {}

  /**
   * The JVM's entry for {@code -javaagent}: installs the TERM handler. The jar is an agent also so that it joins the
   * system class path, where TorchServe's ServiceLoader finds the /ping plugin (ModelLoadedPing). Nothing is
   * instrumented.
   */
  public static void premain(String arguments) {
    try {
      Class<?> signalClass = Class.forName("sun.misc.Signal");
      Class<?> handlerClass = Class.forName("sun.misc.SignalHandler");
      Object term = signalClass.getConstructor(String.class).newInstance("TERM");
      Method handle = signalClass.getMethod("handle", signalClass, handlerClass);
      Method callHandler = handlerClass.getMethod("handle", signalClass);
      Object[] jvmHandler = new Object[1];
      InvocationHandler onSignal = (proxy, method, args) -> {
        switch (method.getName()) {
          case "handle":
            onTerm(() -> runJvmHandler(callHandler, jvmHandler[0], args[0]));
            return null;
          case "hashCode":
            return System.identityHashCode(proxy);
          case "equals":
            return proxy == args[0];
          default:
            return DrainOnTerm.class.getSimpleName();
        }
      };
      Object ours = Proxy.newProxyInstance(handlerClass.getClassLoader(), new Class<?>[] {handlerClass}, onSignal);
      jvmHandler[0] = handle.invoke(null, term, ours);
    } catch (ReflectiveOperationException | RuntimeException | LinkageError e) {
      log("no TERM handler installed (" + e + "): SIGTERM stops TorchServe at once");
    }
  }

  /** Runs in the thread the JVM starts for the signal, which may wait. */
  private static void onTerm(Runnable shutDown) {
    if (!DRAINING.compareAndSet(false, true)) {
      return;
    }
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(WAIT_SECONDS);
    try {
      int signalled = ModelWorkers.forwardTerm();
      log("SIGTERM: sent to " + signalled + " worker(s); waiting at most " + WAIT_SECONDS + " s for their jobs");
      boolean idle = ModelWorkers.awaitIdle(deadline);
      log(idle ? "no worker holds a job: shutting down" : "jobs left after " + WAIT_SECONDS + " s: shutting down");
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    } catch (RuntimeException | LinkageError e) {
      // Not TorchServe 0.11.0 (JDK_JAVA_OPTIONS reaches every JVM in the container), or it changed.
      log("no drain (" + e + "): shutting down");
    }
    shutDown.run();
  }

  private static void runJvmHandler(Method callHandler, Object jvmHandler, Object signal) {
    try {
      callHandler.invoke(jvmHandler, signal);
    } catch (IllegalAccessException | InvocationTargetException | RuntimeException e) {
      // SIG_DFL or SIG_IGN (e.g. -Xrs) cannot be called: exit as SIGTERM would have ended the JVM.
      System.exit(TERM_STATUS);
    }
  }

  static void log(String message) {
    System.err.println("[" + DrainOnTerm.class.getSimpleName() + "] " + message); // NOPMD: before and after log4j
  }
}
