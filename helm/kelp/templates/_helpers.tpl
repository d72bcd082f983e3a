{{/*
Named templates. Every one takes a dict with two keys, so that an app chart that has kelp as a
dependency can call them with kelp's values:

  root    the calling chart's top-level context ($): Release, Chart, Files
  values  kelp's values: .Values inside this chart, .Values.kelp in an app chart

Public (for app charts; README.md shows the usage):
  kelp.sidecar            the kelp container, one list item (under initContainers when
                          sidecar.native is true, under containers when false)
  kelp.sidecar.volumes    the volumes it mounts, list items
  kelp.sidecar.podLabels  the pod labels that make the pod a peer of this mesh (Service,
                          NetworkPolicy and PodMonitor select them), map entries
Names depend only on the release name and kelp's values, never on the calling chart's name, so
the sidecar finds the ConfigMap and peer Service that the kelp chart rendered in the same release.
*/}}

{{- define "kelp.name" -}}
{{- default "kelp" .values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "kelp.fullname" -}}
{{- if .values.fullnameOverride -}}
{{- .values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "kelp.name" . -}}
{{- if contains $name .root.Release.Name -}}
{{- .root.Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .root.Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The peer Service; its DNS name is what KELP_PEER_DNS resolves. */}}
{{- define "kelp.peersName" -}}
{{- printf "%s-peers" (include "kelp.fullname" . | trunc 57 | trimSuffix "-") -}}
{{- end -}}

{{/* The Secret with the peer mTLS files (peers.tls.secretName, default <fullname>-peer-tls). */}}
{{- define "kelp.peerTlsSecretName" -}}
{{- if .values.peers.tls.secretName -}}
{{- .values.peers.tls.secretName -}}
{{- else -}}
{{- printf "%s-peer-tls" (include "kelp.fullname" . | trunc 54 | trimSuffix "-") -}}
{{- end -}}
{{- end -}}

{{/* The ConfigMap with kelp.toml. */}}
{{- define "kelp.configName" -}}
{{- printf "%s-config" (include "kelp.fullname" . | trunc 56 | trimSuffix "-") -}}
{{- end -}}

{{- define "kelp.dashboardsName" -}}
{{- printf "%s-dashboards" (include "kelp.fullname" . | trunc 52 | trimSuffix "-") -}}
{{- end -}}

{{/* Labels of the resources this chart renders (not of the pods that carry the sidecar). */}}
{{- define "kelp.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "kelp.name" . }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: kelp
{{- with .values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The mesh label: every pod that runs this release's kelp sidecar carries it. */}}
{{- define "kelp.sidecar.podLabels" -}}
kelp/mesh: {{ include "kelp.fullname" . }}
{{- end -}}

{{- define "kelp.image" -}}
{{- $image := .values.image -}}
{{- if $image.digest -}}
{{- printf "%s@%s" $image.repository $image.digest -}}
{{- else -}}
{{- printf "%s:%s" $image.repository (required "kelp: image.tag or image.digest is required" $image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The kelp container. */}}
{{- define "kelp.sidecar" -}}
{{- $v := .values -}}
{{- $s := $v.sidecar -}}
{{- if $v.peers.tls.enabled -}}
{{- $tlsDir := printf "%s/" (trimSuffix "/" $v.peers.tls.mountPath) -}}
{{- $configDir := printf "%s/" (trimSuffix "/" $v.config.mountPath) -}}
{{- if or (hasPrefix $configDir $tlsDir) (hasPrefix $tlsDir $configDir) -}}
{{- fail "kelp: peers.tls.mountPath and config.mountPath must not contain each other (a mount point inside a read-only volume cannot be created)" -}}
{{- end -}}
{{- end -}}
- name: {{ $s.name }}
  image: {{ include "kelp.image" . | quote }}
  imagePullPolicy: {{ $v.image.pullPolicy }}
  {{- if $s.native }}
  restartPolicy: Always
  {{- end }}
  env:
    - name: KELP_LISTEN
      value: {{ $v.listen | quote }}
    - name: KELP_BACKEND
      value: {{ required "kelp: backend (the SeaweedFS Kafka gateway host:port) is required" $v.backend | quote }}
    - name: KELP_FILER
      value: {{ required "kelp: filer (the SeaweedFS filer URL) is required" $v.filer | quote }}
    {{- with $v.filerGrpc }}
    - name: KELP_FILER_GRPC
      value: {{ . | quote }}
    {{- end }}
    - name: KELP_CONFIG
      value: {{ printf "%s/kelp.toml" (trimSuffix "/" $v.config.mountPath) | quote }}
    - name: KELP_METRICS_LISTEN
      value: {{ printf "0.0.0.0:%d" (int $v.metrics.port) | quote }}
    {{- /* $(POD_IP) expands only from variables defined earlier in the list. */}}
    - name: POD_IP
      valueFrom:
        fieldRef:
          fieldPath: status.podIP
    - name: KELP_PEER_LISTEN
      value: {{ printf "0.0.0.0:%d" (int $v.peers.port) | quote }}
    - name: KELP_PEER_ADVERTISED
      value: {{ printf "$(POD_IP):%d" (int $v.peers.port) | quote }}
    - name: KELP_PEER_DNS
      value: {{ printf "%s:%d" (include "kelp.peersName" .) (int $v.peers.port) | quote }}
    {{- with $v.peers.tls }}
    {{- if .enabled }}
    {{- $dir := trimSuffix "/" .mountPath }}
    - name: KELP_PEER_TLS_CERT
      value: {{ printf "%s/tls.crt" $dir | quote }}
    - name: KELP_PEER_TLS_KEY
      value: {{ printf "%s/tls.key" $dir | quote }}
    - name: KELP_PEER_TLS_CA
      value: {{ printf "%s/ca.crt" $dir | quote }}
    - name: KELP_PEER_TLS_SERVER_NAME
      value: {{ default (include "kelp.peersName" $) .serverName | quote }}
    {{- end }}
    {{- end }}
    - name: KELP_LOG_FORMAT
      value: {{ $v.logFormat | quote }}
    {{- if not (kindIs "invalid" $s.maxFrameBytes) }}
    - name: KELP_MAX_FRAME_BYTES
      value: {{ $s.maxFrameBytes | int64 | toString | quote }}
    {{- end }}
    - name: RUST_LOG
      value: {{ $v.logLevel | quote }}
    - name: TOKIO_WORKER_THREADS
      value: {{ $s.workerThreads | int | toString | quote }}
    {{- with $s.extraEnv }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  ports:
    - name: kelp-peer
      containerPort: {{ $v.peers.port }}
      protocol: TCP
    - name: kelp-metrics
      containerPort: {{ $v.metrics.port }}
      protocol: TCP
  {{- with $s.startupProbe }}
  startupProbe:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $s.livenessProbe }}
  livenessProbe:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $s.readinessProbe }}
  readinessProbe:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- if and (not $s.native) $s.preStopSleepSeconds }}
  lifecycle:
    preStop:
      sleep:
        seconds: {{ $s.preStopSleepSeconds }}
  {{- end }}
  {{- with $s.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $s.securityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  volumeMounts:
    - name: kelp-config
      mountPath: {{ $v.config.mountPath }}
      readOnly: true
    {{- if $v.peers.tls.enabled }}
    - name: kelp-peer-tls
      mountPath: {{ $v.peers.tls.mountPath }}
      readOnly: true
    {{- end }}
{{- end -}}

{{/* Volumes the kelp container mounts. Not subPath: kelp sees ConfigMap and Secret updates and
reloads (kelp.toml, and the peer certificates when cert-manager rotates them). */}}
{{- define "kelp.sidecar.volumes" -}}
- name: kelp-config
  configMap:
    name: {{ include "kelp.configName" . }}
{{- if .values.peers.tls.enabled }}
- name: kelp-peer-tls
  secret:
    secretName: {{ include "kelp.peerTlsSecretName" . }}
{{- end }}
{{- end -}}
